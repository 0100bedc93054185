"""Helpers shared by the selectors that need a score order or embeddings (no input
validation beyond shapes: `api.select` validates options once)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import DataError


def score_order(table: pa.Table, by: str | None, ascending: bool) -> np.ndarray:
    """Positions of all rows, best score first; NaN scores last; ties broken by `row`. With
    no ranking column (`by=None`), input order."""
    if by is None:
        return np.argsort(table.column("row").to_numpy(), kind="stable")
    values = table.column(by).to_numpy(zero_copy_only=False).astype(np.float64)
    rows = table.column("row").to_numpy()
    key = np.where(np.isnan(values), np.inf, values if ascending else -values)
    return np.lexsort((rows, key))


def check_embeddings(embeddings: np.ndarray | None, n: int, strategy: str) -> np.ndarray:
    """The vectors as contiguous float32 [n, d], or a ValueError naming what is wrong."""
    if embeddings is None:
        raise DataError(f"strategy {strategy!r} needs sentence embeddings of the records")
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise DataError(f"strategy {strategy!r}: embeddings of shape {vectors.shape} do not match "
                        f"the {n} rows of the table (expected ({n}, d))")
    if not np.isfinite(np.einsum("ij,ij->i", vectors, vectors)).all():  # no n×d temporary
        raise DataError(f"strategy {strategy!r}: embeddings contain NaN, infinite or huge values")
    return vectors


def unit_rows(x: np.ndarray) -> np.ndarray:
    """`x` itself when its rows are unit vectors already (cached embeddings are), else a
    normalised copy (zero rows stay zero). No input validation."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    if np.allclose(norms, 1, atol=1e-4):
        return x
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
