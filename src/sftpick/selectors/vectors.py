"""Embeddings for the selectors that need them: one vector per candidate row of a score
table (after filters and the pool), read in blocks from the vectors file beside the scores
(`X.embeddings.parquet`, written by the kNN indicator or by an earlier selection) and
matched by `row`; rows it lacks are computed from the records through the per-record cache
(`embeddings.cached_vectors`: only what was never embedded is embedded), and the file is
rewritten with the candidates' vectors. A file made by another embedder than the strategy
asks for is refused, never silently used."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ..cache import content_digest
from ..embeddings import (cached_vectors, embed_examples, embeddings_meta, embeddings_path, load_embeddings,
                          save_embeddings, vector_config)
from ..errors import DataError
from ..examples import Example
from ..models import DEFAULT_EMBEDDER


def default_path(scores: object) -> Path | None:
    """`X.embeddings.parquet` beside a scores file `X.parquet`; None for a table in memory."""
    return embeddings_path(scores) if isinstance(scores, (str, Path)) else None


def table_vectors(table: pa.Table, candidates: np.ndarray, path: Path | None,
                  records: Callable[[], list[Example]] | None,
                  strategy: str, embedder: str | None = None, text: str = "whole",
                  cache_dir: Path | None = None, max_length: int | None = None) -> tuple[np.ndarray, dict]:
    """(vectors of the table's `candidates` positions, in that order; the embeddings' meta:
    model, revision, text, …). Vectors of any sentence embedder serve, unless the strategy asks
    for an `embedder` of its own, or a `max_length`: then only that model's (and revision's)
    vectors of `text`, cut at `max_length` tokens. `records()` gives the scored records, called
    only when vectors must be computed."""
    rows = table.column("row").to_numpy()[candidates]
    digest = _table_digest(table, records)
    wanted = None if embedder is None and max_length is None else vector_config(embedder or DEFAULT_EMBEDDER, text,
                                                                                max_length=max_length)
    if path is not None and path.exists():
        meta = embeddings_meta(path)
        _refuse_other_embedder(path, meta, wanted, strategy)
        if digest is None or meta.get("content_digest") in (None, digest):
            cached_rows, vectors, _ = load_embeddings(path, rows)
            aligned = _align(rows, cached_rows, vectors)
            if aligned is not None:
                return aligned, meta
    if records is None:
        where = f"no usable embeddings at {path}" if path else "no embeddings given"
        raise DataError(f"strategy {strategy!r} needs sentence embeddings: {where}; "
                        "pass the data file (`sftpick select DATA …`, `data=`) to compute them")
    by_row = {e.row: e for e in records()}
    missing = [int(r) for r in rows if r not in by_row]
    if missing:
        raise DataError(f"the data file has no record at row {missing[0]} of the scores "
                        f"({len(missing)} rows missing): is it the file that was scored?")
    meta = {**(wanted or vector_config(DEFAULT_EMBEDDER, text)), "content_digest": digest}
    vectors = cached_vectors([by_row[r] for r in rows], meta, cache_dir)
    if path is not None:
        save_embeddings(path, rows, vectors, meta)
    return vectors, meta


def _refuse_other_embedder(path: Path, meta: dict, wanted: dict | None, strategy: str) -> None:
    if wanted is None:
        return
    keys = ("model", "revision", "text", "max_length")
    if any(meta.get(key) != wanted.get(key) for key in keys if key in meta or key in wanted):
        made = ", ".join(f"{key} {meta.get(key)!r}" for key in keys if key in meta or key in wanted)
        asked = ", ".join(f"{key} {wanted.get(key)!r}" for key in keys if key in meta or key in wanted)
        raise DataError(f"the vectors in {path} were made by {made}; strategy {strategy!r} asks for {asked}: "
                        "remove the file or pass vectors made that way")


def _table_digest(table: pa.Table, records: Callable[[], list[Example]] | None) -> str | None:
    """What the table's records were (their content digest), to tell a vectors file made for them."""
    if "content_hash" in table.column_names:
        return content_digest(table.column("content_hash").to_pylist())
    if records is None:
        return None
    by_row = {e.row: e.content_hash for e in records()}
    return content_digest([by_row[r] for r in table.column("row").to_pylist() if r in by_row])


def _align(rows: np.ndarray, cached_rows: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
    """The cached vectors in the order of `rows`, or None when some row has none."""
    order = np.argsort(cached_rows, kind="stable")
    at = np.clip(np.searchsorted(cached_rows[order], rows), 0, max(len(order) - 1, 0))
    if len(order) == 0 or not np.array_equal(cached_rows[order][at], rows):
        return None
    return vectors[order[at]]


def embed_records(examples: list[Example], meta: dict) -> np.ndarray:
    """Vectors for records outside the table (e.g. a k-center seed set), made like `meta`'s."""
    return embed_examples(examples, model=meta.get("model", DEFAULT_EMBEDDER), text=meta.get("text", "whole"),
                          max_length=meta.get("max_length"))
