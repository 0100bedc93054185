"""Run scorers over examples in this process: examples are sorted by cost (tokens) so that
batches hold similar lengths, cut into shards, and each finished shard is saved before the
next starts, so a killed run resumes where it stopped. Duplicated content is scored once."""
from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..cache import ShardStore
from ..examples import Example
from ..io import Reject
from ..scorers import REJECT, Scorer


def score_examples(examples: list[Example], scorers: list[Scorer], *, cache_dir: Path | None,
                   source: str = "", shard_size: int = 64, progress: bool = True, workers: int = 1
                   ) -> tuple[dict[str, np.ndarray], list[Reject], dict]:
    """Score every example with every scorer. Returns the columns for the examples that no
    scorer rejected (with `row` and `id`), the rejects, and per-scorer timings. With
    `workers` > 1, per-batch scorers run in that many processes (engines/pool.py)."""
    columns: dict[str, np.ndarray] = {}
    rejected: dict[int, tuple[str, str]] = {}  # index into examples -> (scorer, reason)
    timings = {}
    for scorer in scorers:
        started = time.perf_counter()
        scorer.setup()
        values, reasons, fresh = _run_one(examples, scorer, cache_dir, shard_size, progress, workers)
        columns.update(values)
        for index, reason in reasons.items():
            rejected.setdefault(index, (scorer.name, reason))
        timings[scorer.name] = {"seconds": round(time.perf_counter() - started, 3),
                                "scored_now": fresh, "from_cache": len(examples) - fresh,
                                **(getattr(scorer, "stats_", None) or {})}
    keep = np.array([i for i in range(len(examples)) if i not in rejected], dtype=np.int64)
    table = {"row": np.array([examples[i].row for i in keep], dtype=np.int64),
             "id": np.array([examples[i].id for i in keep], dtype=object)}
    table.update({name: values[keep] for name, values in columns.items()})
    rejects = [Reject(source, examples[i].row, examples[i].line, stage, reason, examples[i].record)
               for i, (stage, reason) in sorted(rejected.items())]
    return table, rejects, timings


def _run_one(examples: list[Example], scorer: Scorer, cache_dir: Path | None, shard_size: int,
             progress: bool, workers: int) -> tuple[dict[str, np.ndarray], dict[int, str], int]:
    unique: dict[str, Example] = {}
    for example in examples:
        unique.setdefault(example.content_hash, example)
    # A whole-dataset scorer (e.g. kNN) gets every distinct example in one call; its
    # scores depend on all of them, so the cache key includes their content.
    whole = getattr(scorer, "whole_dataset", False)
    config = {**scorer.config(), "examples": _digest(unique)} if whole else scorer.config()
    store = ShardStore(cache_dir, scorer.name, config) if cache_dir else None
    done = store.load() if store else {}
    pending = [e for key, e in unique.items() if key not in done]
    shard_size = max(len(pending), 1) if whole else shard_size
    if pending and hasattr(scorer, "cost"):
        pending = [pending[i] for i in np.argsort(scorer.cost(pending), kind="stable")]
    shards = [pending[start: start + shard_size] for start in range(0, len(pending), shard_size)]
    with _progress_bar(progress, scorer.name, len(pending)) as advance:
        parallel = getattr(scorer, "runs_a_model", False) and not whole
        for shard, result in _scored_shards(scorer, shards, workers if parallel else 1):
            keys = [e.content_hash for e in shard]
            if store:
                store.save(keys, result)
            for i, key in enumerate(keys):
                done[key] = {name: values[i] for name, values in result.items()}
            advance(len(shard))
    return _gather(examples, done, scorer.columns), _reasons(examples, done), len(pending)


def _scored_shards(scorer: Scorer, shards: list[list[Example]], workers: int):
    if workers <= 1 or len(shards) <= 1:
        return ((shard, scorer.score(shard)) for shard in shards)
    from .pool import scored_shards

    return scored_shards(scorer, shards, workers)


def _digest(keys) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def _gather(examples: list[Example], done: dict[str, dict], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.array([done[e.content_hash][name] for e in examples]) for name in names}


def _reasons(examples: list[Example], done: dict[str, dict]) -> dict[int, str]:
    return {i: done[e.content_hash][REJECT] for i, e in enumerate(examples)
            if done[e.content_hash].get(REJECT)}


def _progress_bar(enabled: bool, name: str, total: int):
    return _RecordsProgress(name, total) if enabled and total else nullcontext(lambda n: None)


class _RecordsProgress:
    """A rich progress bar that shows records/s; entering it gives the `advance(n)` callback."""

    def __init__(self, name: str, total: int):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(
            TextColumn(f"scoring [bold]{name}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} records/s"), TimeElapsedColumn(), TimeRemainingColumn())
        self.task = self.progress.add_task(name, total=total, rate="-")
        self.count = 0

    def __enter__(self):
        self.started = time.perf_counter()
        self.progress.start()
        return self.advance

    def advance(self, n: int) -> None:
        self.count += n
        rate = self.count / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=n, rate=f"{rate:.1f}")

    def __exit__(self, *exc) -> None:
        self.progress.stop()
