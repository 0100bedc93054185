"""Agreement between two score tables on one column: do two scorers rank the data alike?

Superfiltering (Li et al., ACL 2024, arXiv 2402.00530) rests on this: IFD computed with a
small weak model ranks instruction data much like IFD from a strong one. `compare` measures
it with Spearman's rank correlation, Kendall's tau-b (both from scipy) and the overlap of
the top p% chosen under each score, which is what a top-k selection actually depends on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import DataError, OptionError
from .provenance import HASH
from .writers import read_parquet

TOP_FRACTIONS = (0.05, 0.10, 0.15)
KEYS = ("id", HASH, "row")


@dataclass
class Agreement:
    column: str
    key: str  # the column rows were matched by
    n: int  # rows with a finite score in both tables
    n_a: int
    n_b: int
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    top_overlap: dict[str, float]  # "5%" -> share of A's top 5% that is also in B's top 5%
    ascending: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """Plain-text summary, one figure per line."""
        overlap = ", ".join(f"top {k}: {v:.3f}" for k, v in self.top_overlap.items())
        return [f"{self.n} rows compared on {self.column!r} (matched by {self.key}; "
                f"{self.n_a} in A, {self.n_b} in B)",
                f"Spearman rho = {self.spearman:.4f} (p = {self.spearman_p:.2g})",
                f"Kendall tau-b = {self.kendall:.4f} (p = {self.kendall_p:.2g})",
                f"overlap {overlap}"]


def compare(a: pa.Table | str | Path, b: pa.Table | str | Path, *, column: str = "ifd",
            key: str | None = None, ascending: bool = False,
            fractions: tuple[float, ...] = TOP_FRACTIONS) -> Agreement:
    """Match rows of `a` and `b` by `key` (default: `id` when it is unique in both tables and
    matches at least half their rows, else the records' `content_hash`; never by position)
    and measure how alike `column` ranks them. Fewer than half the rows matched is an error:
    the tables are not scores of the same data. Rows with a missing or non-finite score in
    either table are left out. `ascending=True` means lower is better (the top p% are the
    lowest)."""
    a, b = _table(a), _table(b)
    for name, table in (("A", a), ("B", b)):
        if column not in table.column_names:
            raise OptionError(f"column={column!r} is not in table {name}; its columns: {', '.join(table.column_names)}")
    key = key or _default_key(a, b)
    if key not in a.column_names or key not in b.column_names:
        raise OptionError(f"key={key!r} is not a column of both tables; expected one of {', '.join(KEYS)}")
    shared = _shared(a, b, key)
    if shared < min(a.num_rows, b.num_rows) / 2:
        raise DataError(f"only {shared} rows of A ({a.num_rows}) and B ({b.num_rows}) match by {key!r}: "
                        "they are not scores of the same data")
    x, y = matched_scores(a, b, column, key)
    if len(x) < 2:
        raise DataError(f"only {len(x)} row(s) match by {key!r} with a finite {column!r} in both tables; need >= 2")
    from scipy import stats

    rho, rho_p = stats.spearmanr(x, y)
    tau, tau_p = stats.kendalltau(x, y)
    overlap = {f"{f:.0%}": top_overlap(x, y, f, ascending=ascending) for f in fractions}
    return Agreement(column, key, len(x), a.num_rows, b.num_rows, float(rho), float(rho_p),
                     float(tau), float(tau_p), overlap, ascending)


def matched_scores(a: pa.Table, b: pa.Table, column: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the rows present in both tables, aligned by `key`; no input validation."""
    index_b = {k: i for i, k in enumerate(b.column(key).to_pylist())}
    pairs = [(i, index_b[k]) for i, k in enumerate(a.column(key).to_pylist()) if k in index_b]
    ia, ib = (np.array(p, dtype=np.int64) for p in zip(*pairs)) if pairs else (np.array([], int),) * 2
    x = a.column(column).to_numpy(zero_copy_only=False).astype(float)[ia]
    y = b.column(column).to_numpy(zero_copy_only=False).astype(float)[ib]
    finite = np.isfinite(x) & np.isfinite(y)
    return x[finite], y[finite]


def top_overlap(x: np.ndarray, y: np.ndarray, fraction: float, *, ascending: bool = False) -> float:
    """|top_k(x) ∩ top_k(y)| / k with k = max(1, round(fraction * n)); ties broken by position."""
    k = max(1, int(round(fraction * len(x))))
    order = (lambda v: np.argsort(v, kind="stable")) if ascending else (lambda v: np.argsort(-v, kind="stable"))
    return len(np.intersect1d(order(x)[:k], order(y)[:k])) / k


def _default_key(a: pa.Table, b: pa.Table) -> str:
    if all("id" in t.column_names and _unique(t, "id") for t in (a, b)) and \
            _shared(a, b, "id") >= min(a.num_rows, b.num_rows) / 2:
        return "id"
    if HASH in a.column_names and HASH in b.column_names:
        return HASH
    raise DataError("cannot match rows: ids are not unique and shared by both tables, and the tables hold no "
                    f"{HASH!r} column (score them again with this sftpick to match by content)")


def _shared(a: pa.Table, b: pa.Table, key: str) -> int:
    return len(set(a.column(key).to_pylist()) & set(b.column(key).to_pylist()))


def _unique(table: pa.Table, key: str) -> bool:
    return len(set(table.column(key).to_pylist())) == table.num_rows


def _table(source: pa.Table | str | Path) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such score table")
    return read_parquet(path)
