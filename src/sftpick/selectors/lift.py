"""LIFT's curation: variety first, then quality. Xu et al., "Rethinking the Instruction
Quality: LIFT is What You Need" (arXiv 2312.11508; first titled "Variety and Quality over
Quantity: Towards Versatile Instruction Curation"), and the authors' scripts
(github.com/oraccc/LIFT_Paradigm_Implementation_Code, `paradigm/curation_phase/`).

1. Variety curation (`variety_curation/embedding_variety_curation.py`): standardise each
   embedding dimension (StandardScaler), project onto the principal components that keep 95%
   of the variance (covariance matrix, eigendecomposition), take each record's variance across
   its coordinates there (its "row variance") and keep the 20% with the highest.
2. Quality curation (`quality_curation/quality_curation.py`): among those, keep the best by a
   quality score; `by` names the column (default `judge`, the LLM judge's rating).

LIFT's expansion phase (GPT-4 rewriting instructions to add new records) generates data and
is not a selection: it is out of scope. Where the paper is silent or this module differs
(docs/methods/lift.md says more):
- embedder: LIFT's is text-embedding-ada-002; here the selectors' sentence embeddings (MiniLM);
- components: the fewest explaining more than 95% (the script keeps one fewer, via an
  unseeded randomized SVD); exact, from the covariance matrix in float64;
- signs: row variance changes with a component's sign, which the paper leaves open; each
  component's largest loading is made positive (scikit-learn >= 1.5);
- sizes: the variety stage keeps ceil(20% n) (`variety`; the script: above the 80th
  percentile), the quality stage the budget (the script: 10,000);
- quality: the column `by` names; LIFT's 100-point GPT-4 rubric blended 0.9/0.1 with a
  length score is not reproduced. A record with no value is never chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..budget import parse_budget
from ..errors import DataError, OptionError
from ..options import option
from . import Selector, register
from .ranking import score_order

_BLOCK = 16384  # rows per matrix product: memory stays a block, not a copy of the vectors


@register
@dataclass(kw_only=True, eq=False)
class Lift(Selector):
    name = "lift"
    needs_embeddings = True
    default_by = "judge"  # the quality column, when the scores have it

    by: str | None = "judge"
    variety: int | float | str = option("20%", "lift: records its variety stage keeps, those of highest row "
                                               "variance (count, fraction or %; LIFT's 20%); the budget is then the "
                                               "best of them by --by.")
    explained_variance: float = option(0.95, "lift: share of the embeddings' variance its principal components keep "
                                             "(LIFT's 0.95).", gt=0, le=1, what="a share")

    def check(self) -> None:
        super().check()
        try:
            parse_budget(self.variety, 1)
        except OptionError:
            raise OptionError(f"lift: variety={self.variety!r} should be a count (2000), a fraction (0.2) or a "
                              "percentage (20%) of the records, at least one") from None

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions chosen, best quality first (by row variance without a quality column)."""
        variance, components, kept = row_variances(vectors, self.explained_variance)
        rows = table.column("row").to_numpy()
        by_variety = np.lexsort((rows, -variance))  # ties: lower row first
        self.stats_ = {"components": components, "explained_variance": kept}
        self.notes_ = []
        if self.by is None:
            chosen = by_variety[:budget]
            self.notes_.append("lift: no quality column, so the variety stage alone: the records of highest "
                               "row variance (pass --by judge for LIFT's quality stage)")
        else:
            chosen = self._quality(table, by_variety, budget)
        if len(chosen):
            self.stats_["row_variance_min"] = float(variance[chosen].min())
        return chosen

    def _quality(self, table: pa.Table, by_variety: np.ndarray, budget: int) -> np.ndarray:
        """The `budget` best by `by` among the variety stage's survivors; NaN never chosen."""
        size = parse_budget(self.variety, table.num_rows)
        if size < budget:
            raise DataError(f"lift: variety={self.variety!r} keeps {size} of {table.num_rows} records, fewer "
                            f"than the budget of {budget}: raise --variety or lower the budget")
        survivors = table.take(by_variety[:size])
        order = score_order(survivors, self.by, self.ascending)
        values = survivors.column(self.by).to_numpy(zero_copy_only=False).astype(np.float64)
        order = order[~np.isnan(values[order])]
        chosen = by_variety[:size][order[:budget]]
        self.stats_["variety_kept"] = size
        if len(chosen) < budget:
            self.notes_.append(f"lift: selected {len(chosen)} of {budget}: the other records the variety stage "
                               f"kept have no {self.by} value")
        return chosen


def row_variances(x: np.ndarray, explained_variance: float) -> tuple[np.ndarray, int, float]:
    """(each row's variance across its principal-component coordinates, the number of
    components, the share of variance they keep). No input validation: `x` is [n, d].

    The dimensions are standardised (divided by their standard deviation, none where it is
    0, as StandardScaler); the components are the fewest whose explained variance exceeds
    `explained_variance` (scikit-learn's rule for a fractional `n_components`), each signed
    so that its largest loading is positive (scikit-learn's `svd_flip` on the components).
    Sums are in float64, a block of rows at a time."""
    n, dim = x.shape
    if n < 2:
        return np.zeros(n), 0, 0.0
    mean = sum(_blocks(x, lambda b: b.sum(axis=0))) / n
    scatter = sum(_blocks(x, lambda b: (b - mean).T @ (b - mean)))
    scale = np.sqrt(np.diag(scatter) / n)
    scale[scale == 0] = 1
    eigenvalues, eigenvectors = np.linalg.eigh(scatter / np.outer(scale, scale) / (n - 1))
    eigenvalues, eigenvectors = np.clip(eigenvalues[::-1], 0, None), eigenvectors[:, ::-1]
    if eigenvalues.sum() == 0:  # every record the same: no direction to spread along
        return np.zeros(n), 0, 0.0
    ratio = np.cumsum(eigenvalues) / eigenvalues.sum()
    k = min(int(np.searchsorted(ratio, explained_variance, side="right")) + 1, dim)
    basis = eigenvectors[:, :k]
    largest = np.abs(basis).argmax(axis=0)
    basis = basis * np.sign(basis[largest, np.arange(k)])
    variance = np.concatenate(_blocks(x, lambda b: np.var((b - mean) / scale @ basis, axis=1)))
    return variance, k, float(ratio[k - 1])


def _blocks(x: np.ndarray, f) -> list[np.ndarray]:
    return [f(x[start:start + _BLOCK].astype(np.float64)) for start in range(0, len(x), _BLOCK)]
