"""The curation stage: one pass over the input before any scorer runs (test-set matches, MinHash
band keys, sentence vectors; each cached per record content, so a killed pass resumes), then
the decisions over the whole pool, in this order: contaminated, exact duplicate, near
duplicate, semantic duplicate. Decisions are per content: every copy of a removed record is
removed with it. The first record of a duplicate group in file order is kept (SemDeDup: the
one its rule keeps), and each removed record names its kept twin's row or the test record.

Exact duplicates cost nothing to find or to score (the driver scores a content once), so they
are marked after scoring (`mark_exact`) and keep the scores they share; the records removed
here are never scored."""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..cache import column_digests
from ..embeddings import VECTOR_DTYPES, example_text
from ..engines.stream import score_stream
from ..errors import DataError, OptionError
from ..io import Chunk, Source, read_dataset
from ..io.prompts import load_prompts
from ..models import DEFAULT_EMBEDDER
from ..provenance import HASH
from . import COLUMNS, CONTAMINATED, EXACT, NEAR, SEMANTIC, CurateSettings, MatchSettings
from .decontaminate import NgramIndex
from .lsh import near_duplicates
from .semdedup import semdedup
from .steps import MATCHED, MinHashStep, SentenceVectors, TestSetMatch

@dataclass
class Curation:
    """What the stage removed before scoring: one row per removed input row (`row`, `id`,
    `content_hash` and `COLUMNS`), and what it counted."""

    removed: pa.Table
    tests_found: dict[str, dict] = field(default_factory=dict)  # test file -> records, found in the pool
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def rows(self) -> np.ndarray:
        return np.sort(self.removed.column("row").to_numpy())


def check_curation(settings: CurateSettings) -> None:
    """The test files exist (their records are read when the stage starts, before any model)."""
    for path in settings.decontaminate:
        if not Path(path).is_file():
            raise OptionError(f"decontaminate: {path}: no such file")
    if settings.dedup_permutations % 8:
        raise OptionError(f"dedup_permutations={settings.dedup_permutations} should be a multiple of 8 (each "
                          "record's sketch is stored in 8-byte words)")


def test_records(paths: list[Path]) -> list[tuple[str, int, str]]:
    """(file, row, text) of every record of the test files: records of any supported format,
    their whole text; files of test prompts (Cherry's formats), the prompt."""
    tests = []
    for path in paths:
        try:
            examples = read_dataset(path).examples
        except DataError:
            examples = []
        texts = [example_text(e) for e in examples] or [p.question for p in load_prompts(path)]
        tests += [(str(path), row, text) for row, text in enumerate(texts)]
    return tests


def test_index(paths: list[Path], settings: MatchSettings) -> NgramIndex:
    return NgramIndex.build(test_records(paths), ngram=settings.decontaminate_ngram,
                            min_overlap=settings.decontaminate_min_overlap)


def curation_steps(settings: CurateSettings, device: str = "auto") -> list:
    """The per-record steps this curation needs (none for exact duplicates alone)."""
    steps = []
    if settings.decontaminate:
        steps.append(TestSetMatch(test_index(settings.decontaminate, settings)))
    if settings.dedup == "near":
        steps.append(MinHashStep(settings.dedup_threshold, settings.dedup_ngram, settings.dedup_permutations))
    if settings.dedup == "semantic":
        steps.append(SentenceVectors(embedder=DEFAULT_EMBEDDER, vectors_dtype=VECTOR_DTYPES[0], device=device))
    return steps


def curate(source: Source, settings: CurateSettings, engine, *, cache_dir: Path | None, chunk_size: int,
           progress: bool = True, device: str = "auto") -> Curation | None:
    """Run the stage over `source` (None when only exact duplicates are asked for: they are
    marked after scoring)."""
    if not settings.curates():
        return None
    started = time.perf_counter()
    steps = curation_steps(settings, device)
    seen = score_stream(engine.chunks(source, chunk_size), steps, cache_dir=cache_dir, source=str(source.path),
                        progress=progress, engine=engine, total=source.estimate())
    table = seen.table
    reason = np.full(table.num_rows, None, dtype=object)
    twin = np.full(table.num_rows, -1, dtype=np.int64)  # table position of the kept twin
    matched = (table.column(MATCHED).to_numpy(zero_copy_only=False) if MATCHED in table.column_names
               else np.full(table.num_rows, None, dtype=object))
    reason[np.not_equal(matched, None)] = CONTAMINATED
    first = _first_of(column_digests(table.column(HASH)))
    open_ = (first == np.arange(table.num_rows)) & np.equal(reason, None)  # distinct, not yet removed
    for step in (s for s in steps if s.name in seen.distinct_vectors):
        candidates = np.flatnonzero(open_)
        found = _duplicates(step, _rows_of(seen, step.name, candidates), settings, engine)
        dropped = found >= 0
        reason[candidates[dropped]] = NEAR if isinstance(step, MinHashStep) else SEMANTIC
        twin[candidates[dropped]] = candidates[found[dropped]]
        open_[candidates[dropped]] = False
    copies = first != np.arange(table.num_rows)
    reason[copies], twin[copies], matched[copies] = reason[first[copies]], twin[first[copies]], matched[first[copies]]
    removed = np.flatnonzero(np.not_equal(reason, None))
    rows = table.column("row").to_numpy()
    twin_rows = np.where(twin >= 0, rows[np.maximum(twin, 0)], -1)
    result = table.select(["row", "id", "content_hash"]).take(pa.array(removed, type=pa.int64()))
    result = with_columns(result, reason[removed], twin_rows[removed], matched[removed])
    index = next((step.index for step in steps if isinstance(step, TestSetMatch)), None)
    return Curation(result, tests_found(matched, index), round(time.perf_counter() - started, 3), seen.timings)


def _rows_of(seen, name: str, candidates: np.ndarray) -> np.ndarray:
    """The step's vectors of the candidates (table positions of distinct records), taken out of
    `seen` (its memory goes with this call); no copy when every distinct record is one."""
    vectors = seen.distinct_vectors.pop(name)
    at = seen.positions[candidates]
    return vectors if np.array_equal(at, np.arange(len(vectors))) else vectors[at]


def _first_of(keys: np.ndarray) -> np.ndarray:
    """For each content digest, the position of its first occurrence in `keys`."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


def _duplicates(step, vectors: np.ndarray, settings: CurateSettings, engine) -> np.ndarray:
    """For each record, the index of the kept record it duplicates (-1: kept); near duplicates'
    band keys are grouped by Ray Data on the ray engine."""
    if isinstance(step, MinHashStep):
        keys, sketches = step.split(vectors)
        if engine.name == "ray":
            from .minhash_ray import near_duplicates_ray

            return near_duplicates_ray(keys, sketches, settings.dedup_threshold)
        return near_duplicates(keys, sketches, settings.dedup_threshold)
    return semdedup(vectors, eps=settings.semdedup_eps, n_clusters=settings.semdedup_clusters,
                    keep=settings.semdedup_keep)


def tests_found(matched: np.ndarray, index: NgramIndex | None) -> dict[str, dict]:
    """Per test file: its records, how many of them a pool record matched (a pool record names
    one test record: of identical test records, the first), and how many are too short to be
    looked for (fewer words than the n-gram floor)."""
    if index is None:
        return {}
    hits = {str(m) for m in matched if m is not None}
    found = {}
    for (path, row), n_grams in zip(index.tests, index.n_grams_):
        entry = found.setdefault(path, {"records": 0, "found_in_pool": 0, "too_short_to_check": 0})
        entry["records"] += 1
        entry["found_in_pool"] += f"{path} row {row}" in hits
        entry["too_short_to_check"] += int(n_grams == 0)
    return found


def with_columns(table: pa.Table, reason: np.ndarray, twin_rows: np.ndarray, matched: np.ndarray) -> pa.Table:
    """`table` with the stage's columns (`COLUMNS`): object arrays (None: null) and twin rows
    (-1: null)."""
    twin_rows = np.asarray(twin_rows, dtype=np.int64)
    columns = {"removed": pa.array(reason, type=pa.string(), from_pandas=True),
               "duplicate_of": pa.array(twin_rows, mask=twin_rows < 0, type=pa.int64()),
               "matched": pa.array(matched, type=pa.string(), from_pandas=True)}
    for name in COLUMNS:
        table = table.append_column(name, columns[name])
    return table


def mark_exact(table: pa.Table) -> pa.Table:
    """The score table with every record that repeats an earlier kept record's content marked
    as an exact duplicate of it (the table in row order; removed records keep their reason)."""
    n = table.num_rows
    if "removed" in table.column_names:
        reason = table.column("removed").to_numpy(zero_copy_only=False)
        twin = table.column("duplicate_of").fill_null(-1).to_numpy().copy()  # Arrow buffers are read-only
        matched = table.column("matched").to_numpy(zero_copy_only=False)
        table = table.drop_columns(list(COLUMNS))
    else:
        reason, twin, matched = (np.full(n, None, dtype=object), np.full(n, -1, dtype=np.int64),
                                 np.full(n, None, dtype=object))
    kept = np.flatnonzero(np.equal(reason, None))
    first = _first_of(column_digests(table.column(HASH))[kept])
    copies = first != np.arange(len(kept))
    reason[kept[copies]] = EXACT
    twin[kept[copies]] = table.column("row").to_numpy()[kept[first[copies]]]
    return with_columns(table, reason, twin, matched)


def join_removed(table: pa.Table, curation: Curation | None) -> pa.Table:
    """The scored records and the records the stage removed, in row order (the removed ones
    without scores, the scored ones with the stage's columns null)."""
    if curation is None:
        return table
    joined = pa.concat_tables([table, curation.removed], promote_options="default")
    return joined.take(pa.array(np.argsort(joined.column("row").to_numpy(), kind="stable")))


def without_rows(chunks: Iterable[Chunk], rows: np.ndarray) -> Iterator[Chunk]:
    """The chunks without the examples at `rows` (sorted), their read rejects untouched."""
    for chunk in chunks:
        at = np.array([e.row for e in chunk.examples], dtype=np.int64)
        gone = np.isin(at, rows)
        yield Chunk([e for e, out in zip(chunk.examples, gone) if not out], chunk.rejects)
