"""The driver of every scoring run, whatever the engine: scorers over a stream of examples,
chunk by chunk, in this process or (shards) where the engine sends them. Memory holds one
chunk of Examples, the columnar scores and a compact index of content digests, never the whole
input. Within a chunk, records are sorted by cost (tokens) so that batches hold similar
lengths, then cut into shards; finished shards go to each scorer's resume cache as they
finish, so a killed run resumes where it stopped. Content seen earlier in the input (anywhere,
not only in its chunk) is scored once and shares its scores. An embedding scorer (kNN)
embeds chunk by chunk like any other, its vectors cached per record, and runs its global
step (`search`) once at the end over every distinct example's vector."""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from ..cache import DigestIndex, Journal, ShardStore, column_values, digests, hex_digests
from ..embeddings import VECTOR
from ..examples import Example
from ..io import Chunk, Reject, RejectLog
from ..scorers import REJECT, Scorer
from .base import Engine, trait
from .local import LocalEngine
from .progress import progress_bars

_PIECE_BATCHES = 2  # scorer batches per progress step: a few seconds of a model on CPU


@dataclass
class Scored:
    table: pa.Table  # row, id, content_hash and every scorer's columns, for the records no scorer rejected
    rejects: RejectLog  # the records the reader or a scorer rejected, by row within each chunk, chunks in order
    timings: dict
    distinct_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # embedding scorer -> per distinct example
    positions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # each table row's distinct example

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        """Embedding scorer -> a vector per table row (identical records share one; a copy)."""
        return {name: values[self.positions] for name, values in self.distinct_vectors.items()}


def score_examples(examples: list[Example], scorers: list[Scorer], *, cache_dir: Path | None,
                   source: str = "", shard_size: int = 64, progress: bool = True, workers: int = 1,
                   engine: Engine | None = None) -> tuple[dict[str, np.ndarray], list[Reject], dict]:
    """Score a list of examples held in memory: the columns for the examples that no scorer
    rejected (with `row` and `id`), the rejects, and per-scorer timings."""
    scored = score_stream([Chunk(examples, [])], scorers, cache_dir=cache_dir, source=source, shard_size=shard_size,
                          progress=progress, workers=workers, engine=engine, total=len(examples))
    columns = {name: scored.table.column(name).to_numpy(zero_copy_only=False) for name in scored.table.column_names}
    return columns, list(scored.rejects), scored.timings


def score_stream(chunks: Iterable[Chunk], scorers: list[Scorer], *, cache_dir: Path | None,
                 source: str = "", shard_size: int = 64, progress: bool = True, workers: int = 1,
                 engine: Engine | None = None, total: int | None = None) -> Scored:
    """Score every example of every chunk with every scorer (`total`: the records expected,
    for progress); the chunks' read rejects go to the run's rejects with the scorers' own.
    The `engine` (engines/__init__.py; default: local with `workers`) decides where shards
    are scored: in this process, worker processes or a Ray actor pool."""
    with ExitStack() as stack:
        run = _Run(scorers, cache_dir, shard_size, engine or stack.enter_context(LocalEngine(workers)), source)
        advance = stack.enter_context(progress_bars(progress, [s.name for s in scorers], total))
        stack.callback(run.flush)  # a failed run keeps every finished shard
        for chunk in chunks:
            run.add_chunk(chunk, advance)
        run.finish(advance)
    return run.result()


class _Run:
    """The state of one streaming run: the digest index (content -> distinct position), each
    scorer's columns (an embedding scorer's vectors) per distinct example, per input row its
    row, id, content hash and distinct position, and the rejects (on disk)."""

    def __init__(self, scorers: list[Scorer], cache_dir: Path | None, shard_size: int, engine: Engine, source: str):
        self.scorers, self.cache_dir, self.shard_size, self.engine = scorers, cache_dir, shard_size, engine
        self.source = source
        self.seen = DigestIndex()
        self.values: dict[str, list[dict[str, np.ndarray]]] = {s.name: [] for s in scorers}
        self.vectors: dict[str, np.ndarray] = {}  # embedding scorer -> a vector per distinct example
        self.rows: list[dict] = []  # per chunk: row, id, content_hash, position
        self.rejects = RejectLog()  # on disk as the chunks go
        self.rejected: dict[int, tuple[str, str]] = {}  # distinct position -> (first scorer to reject it, reason)
        self.stats = {s.name: {"seconds": 0.0, "scored_now": 0} for s in scorers}
        self.stores: dict[str, tuple[ShardStore | None, DigestIndex, pa.Table | None]] = {}
        for scorer in scorers:
            started = time.perf_counter()
            scorer.setup()
            if trait(scorer, "embeds"):  # vectors keyed by the embedder alone: a new k or index re-embeds nothing
                self.stores[scorer.name] = self._open_store(scorer, "vectors", scorer.vector_config())
            else:
                self.stores[scorer.name] = self._open_store(scorer, scorer.name, scorer.config())
            self.stats[scorer.name]["seconds"] += time.perf_counter() - started

    def _open_store(self, scorer: Scorer, name: str, config: dict):
        if not self.cache_dir:
            return None, DigestIndex(), None
        store = ShardStore(self.cache_dir, name, config)
        if trait(scorer, "keeps_journal"):  # saves each record as it finishes (judge)
            scorer.open_journal(Journal(store.dir / "journal.jsonl"))
        return (store, *store.load())

    def add_chunk(self, chunk: Chunk, advance: dict) -> None:
        examples = chunk.examples
        hashes = [e.content_hash for e in examples]
        keys = digests(hashes)
        offset = len(self.seen)  # distinct examples before this chunk
        positions, new = self._positions(keys)
        fresh = [examples[i] for i in new]
        self.rows.append({"row": np.array([e.row for e in examples], dtype=np.int64),
                          "id": pa.array([e.id for e in examples], type=pa.string()),
                          "content_hash": pa.array(hashes, type=pa.string()), "position": positions})
        for scorer in self.scorers:
            started = time.perf_counter()
            advance[scorer.name](len(examples) - len(fresh))  # duplicates of earlier records
            values, scored = self._score(scorer, fresh, keys[new], self.stores[scorer.name],
                                         self.shard_size, advance[scorer.name])
            if self.stores[scorer.name][0]:
                self.stores[scorer.name][0].flush()  # one part per chunk and scorer: a resumed run skips it
            _note_rejects(self.rejected, offset, scorer.name, values.pop(REJECT))
            self.values[scorer.name].append(values)
            self.stats[scorer.name]["seconds"] += time.perf_counter() - started
            self.stats[scorer.name]["scored_now"] += scored
        self.rejects.add(sorted(chunk.rejects + self._scorer_rejects(examples, positions), key=lambda r: r.row))

    def _scorer_rejects(self, examples: list[Example], positions: np.ndarray) -> list[Reject]:
        """The chunk's examples whose content a scorer rejected (here or in an earlier chunk)."""
        if not self.rejected:
            return []
        rejects = []
        for i in np.flatnonzero(np.isin(positions, np.fromiter(self.rejected, dtype=np.int64))):
            stage, reason = self.rejected[int(positions[i])]
            rejects.append(Reject(self.source, examples[i].row, examples[i].line, stage, reason, examples[i].record))
        return rejects

    def _positions(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's distinct position (new content gets the next ones, in input order) and the
        indices of the chunk's examples that are the first of their content."""
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        known = self.seen.find(distinct)
        new_distinct = np.flatnonzero(known < 0)
        new_distinct = new_distinct[np.argsort(first[new_distinct], kind="stable")]
        known[new_distinct] = len(self.seen) + np.arange(len(new_distinct))
        self.seen.add(distinct[new_distinct], known[new_distinct])
        return known[inverse.ravel()], first[new_distinct]

    def _score(self, scorer: Scorer, examples: list[Example], keys: np.ndarray, store_state, shard_size: int,
               advance) -> tuple[dict[str, np.ndarray], int]:
        """The scorer's columns (and REJECT) for `examples`, from its cache where done, else
        scored in shards sorted by cost and saved as they finish; and how many were scored now."""
        store, index, cached = store_state
        found = index.find(keys)
        hit = np.flatnonzero(found >= 0)
        parts = [(hit, {name: column_values(cached.column(name).take(pa.array(found[hit])))
                        for name in cached.column_names if name != "content_hash"})] if len(hit) else []
        advance(len(hit))
        todo = np.flatnonzero(found < 0)
        pending = [examples[i] for i in todo]
        costs = np.ones(len(pending))
        if pending and hasattr(scorer, "cost"):
            costs = scorer.cost(pending)
            order = np.argsort(costs, kind="stable")
            pending, costs, todo = [pending[i] for i in order], costs[order], todo[order]
        if not (trait(scorer, "runs_a_model") or trait(scorer, "keeps_journal")):
            shard_size = 0  # cheap scorers (len, mtld), kept here by every engine: the chunk is one shard, in pieces
        shard_size = shard_size or max(len(pending), 1)
        shards = [range(start, min(start + shard_size, len(pending))) for start in range(0, len(pending), shard_size)]
        for span, result in _scored_shards(scorer, pending, costs, shards, self.engine, advance):
            if store:
                store.save([pending[i].content_hash for i in span], result)
            parts.append((todo[span.start: span.stop], result))
        columns = (VECTOR,) if trait(scorer, "embeds") else scorer.columns
        return _assemble(parts, len(examples), columns), len(pending)

    def finish(self, advance: dict) -> None:
        """The global step of each embedding scorer, over every distinct example's vector."""
        for scorer in self.scorers:
            if trait(scorer, "embeds"):
                started = time.perf_counter()
                self.vectors[scorer.name] = _gathered(self.values[scorer.name])
                self.values[scorer.name] = [self._search(scorer, self.vectors[scorer.name]) if scorer.columns else {}]
                self.stats[scorer.name]["seconds"] += time.perf_counter() - started

    def _search(self, scorer: Scorer, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """`scorer.search` over the vectors of every distinct example (in position order), from
        the cache when this set of examples was searched with this config before."""
        config = {**scorer.config(), "examples": self.seen.digest()}  # its result depends on all of them
        store, index, cached = self._open_store(scorer, scorer.name, config)
        keys = self.seen.keys_by_value()
        found = index.find(keys)
        if len(keys) and (found >= 0).all():
            return {name: column_values(cached.column(name).take(pa.array(found))) for name in scorer.columns}
        columns = scorer.search(vectors.astype(np.float32))
        if store:
            store.save(hex_digests(keys), columns)
            store.flush()
        return columns

    def flush(self) -> None:
        for store, _, _ in self.stores.values():
            if store:
                store.flush()

    def result(self) -> Scored:
        rows = {name: np.concatenate([r[name] for r in self.rows]) if self.rows else np.empty(0, np.int64)
                for name in ("row", "position")}
        rejected = np.zeros(len(self.seen), dtype=bool)
        rejected[np.fromiter(self.rejected, dtype=np.int64, count=len(self.rejected))] = True
        keep = ~rejected[rows["position"]] if len(rows["position"]) else np.zeros(0, bool)
        where = pa.array(np.flatnonzero(keep))
        table = {"row": rows["row"][keep],
                 "id": pa.chunked_array([r["id"] for r in self.rows], type=pa.string()).take(where),
                 "content_hash": pa.chunked_array([r["content_hash"] for r in self.rows], type=pa.string()).take(where)}
        for scorer in self.scorers:
            parts = self.values[scorer.name]
            for name in scorer.columns:
                values = np.concatenate([p[name] for p in parts]) if parts else np.empty(0)
                table[name] = values[rows["position"][keep]]
        n = len(rows["row"])
        timings = {s.name: {"seconds": round(self.stats[s.name]["seconds"], 3),
                            "scored_now": self.stats[s.name]["scored_now"],
                            "from_cache": n - self.stats[s.name]["scored_now"],
                            **(getattr(s, "stats_", None) or {})} for s in self.scorers}
        return Scored(pa.table({name: _arrow(values) for name, values in table.items()}), self.rejects, timings,
                      self.vectors, rows["position"][keep])


def _gathered(parts: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The chunks' vectors as one array, each chunk's released as it is copied (memory holds
    the whole once, not twice); a chunk of repeats has none."""
    parts = [part for part in parts if len(part[VECTOR])]
    if not parts:
        return np.empty((0, 0), np.float32)
    first = parts[0][VECTOR]
    out = np.empty((sum(len(part[VECTOR]) for part in parts), *first.shape[1:]), dtype=first.dtype)
    at = 0
    for part in parts:
        vectors = part.pop(VECTOR)
        out[at: at + len(vectors)] = vectors
        at += len(vectors)
    return out


def _note_rejects(rejected: dict[int, tuple[str, str]], offset: int, name: str, reasons: np.ndarray) -> None:
    """Record `name` as the rejecting scorer of each example it rejected (`reasons`, per distinct
    example from `offset` on) that no earlier scorer did."""
    for i in np.flatnonzero(_present(reasons)):
        rejected.setdefault(offset + int(i), (name, reasons[i]))


def _present(values: np.ndarray) -> np.ndarray:
    """True where an object array holds something other than None."""
    return np.not_equal(values, None) if values.dtype == object else np.zeros(len(values), dtype=bool)


def _assemble(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]], n: int,
              names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Columns for `n` examples from parts that each cover some of them (positions, columns);
    REJECT is None where a part has none."""
    out = {}
    positions = np.concatenate([p for p, _ in parts]) if parts else np.empty(0, np.int64)
    for name in (*names, REJECT):
        pieces = [values.get(name, np.full(len(p), None, dtype=object)) for p, values in parts]
        if not pieces:
            out[name] = np.full(n, None, dtype=object) if name == REJECT else np.empty(0)
            continue
        values = np.concatenate([np.asarray(v) for v in pieces])
        column = np.empty((n, *values.shape[1:]), dtype=values.dtype)
        column[positions] = values
        out[name] = column
    return out


def _arrow(values) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    return pa.array(list(values) if values.dtype == object else values)


def _scored_shards(scorer: Scorer, pending: list[Example], costs: np.ndarray, shards: list[range],
                   engine: Engine, advance):
    """(shard, scores) for every shard. In this process a shard is scored in pieces of about
    `_PIECE_BATCHES` of the scorer's batches (or of `piece_cost_`, when the scorer sets it: the
    judge takes a few waves of concurrent requests), so progress moves every few seconds, not
    once a shard; the engine's workers report whole shards. When the engine keeps this scorer
    here, shards are scored in this process."""
    if not engine.distributes(scorer, len(shards)):
        budget = getattr(scorer, "piece_cost_", None) or _PIECE_BATCHES * getattr(scorer, "token_budget_", 0) or None
        for shard in shards:
            results = []
            for piece in pieces(shard, costs, budget):
                results.append(scorer.score(pending[piece.start: piece.stop]))
                advance(len(piece))
            yield shard, {name: np.concatenate([r[name] for r in results]) for name in results[0]}
        return
    for index, result in engine.scored_shards(scorer, [[pending[i] for i in shard] for shard in shards]):
        advance(len(shards[index]))
        yield shards[index], result


def pieces(shard: range, costs: np.ndarray, token_budget: int | None) -> list[range]:
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
