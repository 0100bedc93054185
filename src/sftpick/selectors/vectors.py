"""Embeddings for the selectors that need them: one vector per row of a score table, read
from the file beside the scores (`X.embeddings.parquet`, written by the kNN indicator or by
an earlier selection) and matched by `row`; when absent, stale or incomplete, computed with
the default embedder from the records and saved there, so the next call reuses them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..cache import content_digest
from ..embeddings import LM_PREFIX, embed_examples, embeddings_path, load_embeddings, save_embeddings
from ..examples import Example
from ..models import DEFAULT_EMBEDDER


def default_path(scores: object) -> Path | None:
    """`X.embeddings.parquet` beside a scores file `X.parquet`; None for a table in memory."""
    return embeddings_path(scores) if isinstance(scores, (str, Path)) else None


def table_vectors(table: pa.Table, path: Path | None, examples: list[Example] | None,
                  strategy: str, embedder: str | None = None, text: str = "whole") -> tuple[np.ndarray, dict]:
    """(vectors aligned with the table's rows, the embeddings' meta: model, text, …). Cached
    vectors of any sentence embedder serve, unless the strategy asks for an `embedder` of its
    own: then only that model's vectors of `text` do."""
    rows = table.column("row").to_numpy()
    by_row = None if examples is None else {e.row: e for e in examples}
    if path is not None and path.exists():
        cached_rows, vectors, meta = load_embeddings(path)
        aligned = _align(rows, cached_rows, vectors)
        made_by = embedder is None or (meta.get("model"), meta.get("text")) == (embedder, text)
        if aligned is not None and made_by and (by_row is None or _matches(meta, cached_rows, by_row)):
            return aligned, meta
    if by_row is None:
        where = f"no usable embeddings at {path}" if path else "no embeddings given"
        raise ValueError(f"strategy {strategy!r} needs sentence embeddings: {where}; "
                         "pass the data file (`sftpick select DATA …`, `data=`) to compute them")
    missing = [int(r) for r in rows if r not in by_row]
    if missing:
        raise ValueError(f"the data file has no record at row {missing[0]} of the scores "
                         f"({len(missing)} rows missing): is it the file that was scored?")
    chosen = [by_row[r] for r in rows]
    model = embedder or DEFAULT_EMBEDDER
    meta = {"model": model, "text": text, "normalized": not model.startswith(LM_PREFIX),
            "content_digest": content_digest([e.content_hash for e in chosen])}
    vectors = _embed_unique(chosen, model, text)
    if path is not None:
        save_embeddings(path, rows, vectors, meta)
    return vectors, meta


def _align(rows: np.ndarray, cached_rows: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
    """The cached vectors in the order of `rows`, or None when some row has none."""
    order = np.argsort(cached_rows, kind="stable")
    at = np.clip(np.searchsorted(cached_rows[order], rows), 0, max(len(order) - 1, 0))
    if len(order) == 0 or not np.array_equal(cached_rows[order][at], rows):
        return None
    return vectors[order[at]]


def _matches(meta: dict, cached_rows: np.ndarray, by_row: dict[int, Example]) -> bool:
    """Whether the cached vectors were made from these records (when the file says)."""
    if "content_digest" not in meta:
        return True
    if any(int(r) not in by_row for r in cached_rows):
        return False
    return meta["content_digest"] == content_digest([by_row[int(r)].content_hash for r in cached_rows])


def _embed_unique(examples: list[Example], model: str, text: str) -> np.ndarray:
    """Identical records are embedded once."""
    slot: dict[str, int] = {}
    unique: list[Example] = []
    for example in examples:
        if example.content_hash not in slot:
            slot[example.content_hash] = len(unique)
            unique.append(example)
    vectors = embed_examples(unique, model=model, text=text, progress=len(unique) > 5000)
    return vectors[[slot[e.content_hash] for e in examples]]


def embed_records(examples: list[Example], meta: dict) -> np.ndarray:
    """Vectors for records outside the table (e.g. a k-center seed set), made like `meta`'s."""
    return embed_examples(examples, model=meta.get("model", DEFAULT_EMBEDDER), text=meta.get("text", "whole"))
