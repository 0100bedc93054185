"""The arms of an evaluation: what each model is fine-tuned on.

- `file`: a training file (e.g. a selected subset), as it is.
- `random`: a random subset of the pool, of the same size as the first file arm (or
  `size`), drawn without replacement with the arm's seed.
- `longest`: the pool's records with the longest responses, in tokens before truncation
  (Zhao et al., "Long Is More for Alignment", arXiv 2402.04833); ties go to the earlier row.
- `full`: the whole pool.

Every arm is built from records that encode (`data.encode`); a record of the pool whose
prompt fills `max_length` is never drawn, so every baseline trains on its full size.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..examples import Example
from ..io.records import reason_kind
from .data import Encoded

BASELINES = ("random", "longest", "full")


@dataclass
class Source:
    """A file read, checked and encoded: the records that can be trained on."""

    path: str
    sha256: str
    format: str  # alpaca | sharegpt | openai
    n_records: int  # in the file
    examples: list[Example]  # those kept
    encoded: list[Encoded]
    rejects: dict[str, int] = field(default_factory=dict)  # reason -> count
    contaminated: list[dict] = field(default_factory=list)  # dropped: their row and the test record matched


@dataclass
class Arm:
    name: str
    kind: str  # file | random | longest | full
    seed: int
    source: Source
    rows: np.ndarray  # positions in source.examples, in training order

    @property
    def examples(self) -> list[Example]:
        return [self.source.examples[i] for i in self.rows]

    @property
    def encoded(self) -> list[Encoded]:
        return [self.source.encoded[i] for i in self.rows]


def make_source(dataset, encoded: list[Encoded | None], reasons: list[str | None]) -> Source:
    """Keep the examples that encoded; count the others by reason with the read rejects."""
    rejects = Counter(r.kind for r in dataset.rejects)
    rejects.update(reason_kind(r) for r in reasons if r is not None)
    kept = [i for i, e in enumerate(encoded) if e is not None]
    return Source(str(dataset.path), dataset.sha256, dataset.format, dataset.n_records, [dataset.examples[i] for i in kept],
                  [encoded[i] for i in kept], dict(rejects))


def file_names(paths: list[str]) -> list[str]:
    """Short unique names: the file stem, with as many parent folders as it takes."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]  # the same file given twice


def build_arms(files: list[tuple[str, Source]], baselines: list[str], pool: Source | None, seeds: list[int],
               size: int | None, fixed_seeds: int | None = None) -> list[Arm]:
    """Every arm for every seed, seed by seed (no input validation). Arms whose records do not
    change with the seed (files, longest, full) are fine-tuned for the first `fixed_seeds`
    seeds only (default: all); random draws a new subset for every seed."""
    fixed_seeds = len(seeds) if fixed_seeds is None else fixed_seeds
    arms = []
    for i, seed in enumerate(seeds):
        fixed = i < fixed_seeds
        arms += [Arm(name, "file", seed, source, np.arange(len(source.examples))) for name, source in files if fixed]
        for kind in baselines:
            if fixed or kind == "random":
                arms.append(Arm(kind, kind, seed, pool, _baseline_rows(kind, pool, size, seed)))
    return arms


def _baseline_rows(kind: str, pool: Source, size: int | None, seed: int) -> np.ndarray:
    n = len(pool.examples)
    if kind == "full":
        return np.arange(n)
    if kind == "random":
        return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    lengths = np.array([e.n_response_full for e in pool.encoded])
    return np.sort(np.argsort(-lengths, kind="stable")[:size])


def find_overlap(eval_hashes: list[str], arms: list[Arm]) -> tuple[int, Arm, int] | None:
    """The first eval record (position) that is also in an arm, with the arm and its position there."""
    positions = {h: i for i, h in reversed(list(enumerate(eval_hashes)))}
    for arm in arms:
        for j, example in enumerate(arm.examples):
            if example.content_hash in positions:
                return positions[example.content_hash], arm, j
    return None


def count_overlap(eval_hashes: list[str], arms: list[Arm]) -> int:
    trained = {e.content_hash for arm in arms for e in arm.examples}
    return sum(h in trained for h in eval_hashes)
