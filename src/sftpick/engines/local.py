"""Run scorers over examples in this process: examples are sorted by cost (tokens) so that
batches hold similar lengths, cut into shards, and each finished shard is saved before the
next starts, so a killed run resumes where it stopped. Duplicated content is scored once."""
from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..cache import Journal, ShardStore, content_digest
from ..examples import Example
from ..io import Reject
from ..scorers import REJECT, Scorer
from . import Engine, LocalEngine

_PIECE_BATCHES = 2  # scorer batches per progress step: a few seconds of a model on CPU
LOG_SECONDS = 10.0  # between progress lines when stderr is not a terminal


def score_examples(examples: list[Example], scorers: list[Scorer], *, cache_dir: Path | None,
                   source: str = "", shard_size: int = 64, progress: bool = True, workers: int = 1,
                   engine: Engine | None = None) -> tuple[dict[str, np.ndarray], list[Reject], dict]:
    """Score every example with every scorer. Returns the columns for the examples that no
    scorer rejected (with `row` and `id`), the rejects, and per-scorer timings. The `engine`
    (engines/__init__.py; default: local with `workers`) decides where shards are scored."""
    engine = engine or LocalEngine(workers)
    columns: dict[str, np.ndarray] = {}
    rejected: dict[int, tuple[str, str]] = {}  # index into examples -> (scorer, reason)
    timings = {}
    for scorer in scorers:
        started = time.perf_counter()
        scorer.setup()
        values, reasons, fresh = _run_one(examples, scorer, cache_dir, shard_size, progress, engine)
        columns.update(values)
        for index, reason in reasons.items():
            rejected.setdefault(index, (scorer.name, reason))
        timings[scorer.name] = {"seconds": round(time.perf_counter() - started, 3),
                                "scored_now": fresh, "from_cache": len(examples) - fresh,
                                **(getattr(scorer, "stats_", None) or {})}
    keep = np.array([i for i in range(len(examples)) if i not in rejected], dtype=np.int64)
    table = {"row": np.array([examples[i].row for i in keep], dtype=np.int64),
             "id": np.array([examples[i].id for i in keep], dtype=object),
             "content_hash": np.array([examples[i].content_hash for i in keep], dtype=object)}
    table.update({name: values[keep] for name, values in columns.items()})
    rejects = [Reject(source, examples[i].row, examples[i].line, stage, reason, examples[i].record)
               for i, (stage, reason) in sorted(rejected.items())]
    return table, rejects, timings


def _run_one(examples: list[Example], scorer: Scorer, cache_dir: Path | None, shard_size: int,
             progress: bool, engine: Engine) -> tuple[dict[str, np.ndarray], dict[int, str], int]:
    unique: dict[str, Example] = {}
    for example in examples:
        unique.setdefault(example.content_hash, example)
    # A whole-dataset scorer (e.g. kNN) gets every distinct example in one call; its
    # scores depend on all of them, so the cache key includes their content.
    whole = getattr(scorer, "whole_dataset", False)
    config = {**scorer.config(), "examples": content_digest(unique)} if whole else scorer.config()
    store = ShardStore(cache_dir, scorer.name, config) if cache_dir else None
    if store and getattr(scorer, "keeps_journal", False):  # saves each record as it finishes (judge)
        scorer.open_journal(Journal(store.dir / "journal.jsonl"))
    done = store.load() if store else {}
    pending = [e for key, e in unique.items() if key not in done]
    shard_size = max(len(pending), 1) if whole else shard_size
    costs = np.ones(len(pending))
    if pending and hasattr(scorer, "cost"):
        costs = scorer.cost(pending)
        order = np.argsort(costs, kind="stable")
        pending, costs = [pending[i] for i in order], costs[order]
    shards = [range(start, min(start + shard_size, len(pending))) for start in range(0, len(pending), shard_size)]
    with _progress_bar(progress, scorer.name, len(pending)) as advance:
        for span, result in _scored_shards(scorer, pending, costs, shards, engine, advance, in_pieces=not whole):
            keys = [pending[i].content_hash for i in span]
            if store:
                store.save(keys, result)
            for i, key in enumerate(keys):
                done[key] = {name: values[i] for name, values in result.items()}
    return _gather(examples, done, scorer.columns), _reasons(examples, done), len(pending)


def _scored_shards(scorer: Scorer, pending: list[Example], costs: np.ndarray, shards: list[range], engine: Engine,
                   advance, *, in_pieces: bool):
    """(shard, scores) for every shard. In this process a shard is scored `in_pieces` of about
    `_PIECE_BATCHES` of the scorer's batches (or of `piece_cost_`, when the scorer sets it: the
    judge takes a few waves of concurrent requests), so progress moves every few seconds, not
    once a shard; the engine's workers report whole shards."""
    if not engine.distributes(scorer, len(shards)):
        budget = getattr(scorer, "piece_cost_", None) or _PIECE_BATCHES * getattr(scorer, "token_budget_", 0) or None
        for shard in shards:
            results = []
            for piece in _pieces(shard, costs, budget) if in_pieces else [shard]:
                results.append(scorer.score(pending[piece.start: piece.stop]))
                advance(len(piece))
            yield shard, {name: np.concatenate([r[name] for r in results]) for name in results[0]}
        return
    for index, result in engine.scored_shards(scorer, [[pending[i] for i in shard] for shard in shards]):
        advance(len(shards[index]))
        yield shards[index], result


def _pieces(shard: range, costs: np.ndarray, token_budget: int | None) -> list[range]:
    """Consecutive parts of `shard` whose summed cost stays within `token_budget` (at least one
    record each); without a budget, quarters of the shard."""
    if token_budget is None:
        step = max(1, -(-len(shard) // 4))
        return [range(i, min(i + step, shard.stop)) for i in range(shard.start, shard.stop, step)]
    pieces, start, total = [], shard.start, 0.0
    for i in shard:
        if i > start and total + costs[i] > token_budget:
            pieces.append(range(start, i))
            start, total = i, 0.0
        total += costs[i]
    return pieces + [range(start, shard.stop)]


def _gather(examples: list[Example], done: dict[str, dict], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: np.array([done[e.content_hash][name] for e in examples]) for name in names}


def _reasons(examples: list[Example], done: dict[str, dict]) -> dict[int, str]:
    return {i: done[e.content_hash][REJECT] for i, e in enumerate(examples)
            if done[e.content_hash].get(REJECT)}


def _progress_bar(enabled: bool, name: str, total: int):
    if not (enabled and total):
        return nullcontext(lambda n: None)
    return _RecordsProgress(name, total) if sys.stderr.isatty() else _ProgressLog(name, total)


class _RecordsProgress:
    """A rich progress bar with records/s and an ETA; entering it gives the `advance(n)` callback."""

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


class _ProgressLog:
    """Progress for a log file (stderr is not a terminal): a plain line every `LOG_SECONDS`
    (SFTPICK_LOG_SECONDS overrides) with records done, records/s and the ETA, and one at the end."""

    def __init__(self, name: str, total: int):
        self.name, self.total, self.count = name, total, 0
        self.every = float(os.environ.get("SFTPICK_LOG_SECONDS", LOG_SECONDS))

    def __enter__(self):
        self.started = self.logged = time.perf_counter()
        return self.advance

    def advance(self, n: int) -> None:
        self.count += n
        if time.perf_counter() - self.logged >= self.every:
            self._log()

    def _log(self) -> None:
        self.logged = time.perf_counter()
        rate = self.count / max(self.logged - self.started, 1e-9)
        eta = (self.total - self.count) / rate if rate > 0 else float("inf")
        print(f"scoring {self.name}: {self.count}/{self.total} records ({self.count / self.total:.1%}), "
              f"{rate:.1f} records/s, ETA {_duration(eta)}", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._log()


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
