"""Proxy check: score a dataset with a small (weak) model only after checking, on a seeded
random sample, that it ranks the data like the stronger model it stands in for.

Superfiltering (Li et al., ACL 2024, arXiv 2402.00530) shows that IFD from a weak model
(GPT-2) ranks instruction data consistently with IFD from much larger models, so the weak
model can filter for the strong one. Whether that holds for a given pair of models and a
given dataset is an empirical question; this module measures it before the full run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from .compare import Agreement, compare
from .engines.local import score_examples
from .examples import Example
from .io import CHUNK_RECORDS, read_dataset
from .writers import atomic_write, sibling

DEFAULT_CHECK = 500


@dataclass
class ProxyCheck:
    strong: str
    weak: str
    sample: int  # records drawn
    seed: int
    min_agreement: float | None  # on Spearman rho
    agreement: Agreement

    @property
    def passed(self) -> bool:
        return self.min_agreement is None or self.agreement.spearman >= self.min_agreement

    def to_dict(self) -> dict:
        return {"strong": self.strong, "weak": self.weak, "sample": self.sample, "seed": self.seed,
                "min_agreement": self.min_agreement, "passed": self.passed,
                "agreement": self.agreement.to_dict()}


def sample_examples(examples: list[Example], n: int, seed: int) -> list[Example]:
    """`n` examples drawn without replacement with `seed`, in input order."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(examples), size=min(n, len(examples)), replace=False))
    return [examples[i] for i in chosen]


def agreement_on(examples: list[Example], strong, weak, *, column: str = "ifd",
                 cache_dir: Path | None = None, progress: bool = True) -> Agreement:
    """Score `examples` with both scorers and compare their `column`, rows matched by `row`;
    no input validation."""
    tables = []
    for scorer in (strong, weak):
        columns, _, _ = score_examples(examples, [scorer], cache_dir=cache_dir, progress=progress)
        if column not in columns:
            raise ValueError(f"column={column!r} is not produced by the scorer {scorer.name!r}")
        tables.append(pa.table({"row": columns["row"], column: columns[column]}))
    return compare(tables[0], tables[1], column=column, key="row")


def score_with_proxy(data: str | Path, output: str | Path, *, model: str, proxy: str,
                     check: int = DEFAULT_CHECK, min_agreement: float | None = None, seed: int = 0,
                     scorers: list[str] | None = None, fmt: str | None = None, progress: bool = True,
                     proxy_options: dict | None = None, on_check: Callable[[ProxyCheck], None] | None = None,
                     strict: bool = False, shard_size: int = 64, workers: int = 1, rejects: str | Path | None = None,
                     engine: str = "local", ray_address: str | None = None, gpus_per_worker: float = 0.0,
                     chunk_size: int = CHUNK_RECORDS, **options):
    """Check that `proxy` (weak) agrees with `model` (strong) on `check` sampled records,
    then score the whole dataset with `proxy`. Raises ValueError when Spearman rho is below
    `min_agreement`. Writes the check beside the scores (`<output stem>.proxy.json`).
    `proxy_options` override `options` for the weak model only (e.g. another template);
    `on_check` is called with the check's figures before the decision (the CLI prints them);
    `strict`, `shard_size`, `workers`, `rejects`, `chunk_size` and the engine settings go to the
    full scoring run (the check's sample is scored here)."""
    from .api import build_scorers, score
    from .engines import check_engine

    check_engine(engine, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker,
                 device=options.get("device"))
    if check < 2:
        raise ValueError(f"check={check} should be >= 2 records")
    if min_agreement is not None and not -1 <= min_agreement <= 1:
        raise ValueError(f"min_agreement={min_agreement} should be a Spearman rho in [-1, 1]")
    names = list(scorers or ["ifd"])
    weak_options = {**options, **(proxy_options or {}), "model": proxy}
    dataset = read_dataset(data, fmt)
    sample = sample_examples(dataset.examples, check, seed)
    cache_dir = Path(str(output) + ".cache")
    strong = _scorer_of(build_scorers(names, {**options, "model": model}), "ifd")
    weak = _scorer_of(build_scorers(names, weak_options), "ifd")
    result = ProxyCheck(model, proxy, len(sample), seed, min_agreement,
                        agreement_on(sample, strong, weak, cache_dir=cache_dir, progress=progress))
    atomic_write(sibling(output, ".proxy.json"), json.dumps(result.to_dict(), indent=2))
    if on_check is not None:
        on_check(result)
    if not result.passed:
        raise ValueError(
            f"proxy {proxy!r} disagrees with {model!r}: Spearman rho = {result.agreement.spearman:.3f} on "
            f"{result.agreement.n} sampled records, below min_agreement={min_agreement}; "
            f"score with {model!r} instead, or choose another proxy")
    return score(data, output, scorers=names, fmt=fmt, strict=strict, progress=progress, shard_size=shard_size,
                 workers=workers, rejects=rejects, engine=engine, ray_address=ray_address,
                 gpus_per_worker=gpus_per_worker, chunk_size=chunk_size, **weak_options), result


def _scorer_of(scorers: list, column: str):
    found = [s for s in scorers if column in s.columns]
    if not found:
        raise ValueError(f"the proxy check compares {column!r}, which none of the scorers "
                         f"({', '.join(s.name for s in scorers)}) produces")
    return found[0]
