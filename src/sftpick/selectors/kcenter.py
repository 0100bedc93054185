"""k-center greedy (coverage): pick the record farthest from every record chosen so far.

Gonzalez's greedy (1985) is a 2-approximation of the smallest covering radius; Sener &
Savarese use it as the core-set of active learning ("Active Learning for Convolutional
Neural Networks: A Core-Set Approach", arXiv 1708.00489), and MoDS (Du et al., "MoDS:
Model-oriented Data Selection for Instruction Tuning", arXiv 2311.15653) picks its seed and
its "necessity" data with it, the latter starting from the seed already chosen (`centers`).

Distances are Euclidean between the embeddings. Without `centers` the first pick is the
best-scored record (ties by `row`), so the result depends on the data only. Each pick lowers
every record's distance to its nearest center; by the triangle inequality a record whose
nearest center lies at least twice its distance from the new center cannot get closer, so
it is skipped: the result is that of the plain O(n·k·d) loop, with far fewer rows touched.
"""
from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa

from . import register
from .ranking import check_embeddings, score_order

_SLACK = 1e-5  # relative margin on the skip test, against float32 rounding


@register
class KCenter:
    name = "kcenter"
    needs_embeddings = True

    def __init__(self, by: str = "ifd", *, ascending: bool = False, centers: np.ndarray | None = None):
        self.by = by
        self.ascending = ascending
        self.centers = centers

    def select(self, table: pa.Table, budget: int, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Positions in pick order; `stats_["covering_radius"]` is the largest distance from
        a record of the table to its nearest center (chosen or given) afterwards."""
        vectors = check_embeddings(embeddings, table.num_rows, self.name)
        seeds = None if self.centers is None else check_embeddings(
            self.centers, len(self.centers), self.name + " centers")
        if seeds is not None and seeds.shape[1] != vectors.shape[1]:
            raise ValueError(f"kcenter: centers have {seeds.shape[1]} dimensions, the embeddings {vectors.shape[1]}")
        first = int(score_order(table, self.by, self.ascending)[0]) if table.num_rows else 0
        chosen, radius = kcenter_greedy(vectors, budget, seeds, first=first)
        self.stats_ = {"covering_radius": radius, "seed_centers": 0 if seeds is None else len(seeds)}
        self.notes_ = [] if len(chosen) >= budget else [
            f"kcenter: selected {len(chosen)} of {budget}: every other record duplicates a chosen one "
            "(covering radius 0)"]
        return chosen


def kcenter_greedy(x: np.ndarray, budget: int, seeds: np.ndarray | None = None, *,
                   first: int = 0) -> tuple[np.ndarray, float | None]:
    """Greedy picks (positions in pick order) and the final covering radius. No input validation:
    `x` is float32 [n, d], `seeds` float32 [m, d] or None. Stops early once the radius is 0."""
    n, dim = x.shape
    norms = np.einsum("ij,ij->i", x, x)
    m = 0 if seeds is None else len(seeds)
    centers = np.empty((m + budget, dim), dtype=np.float32)
    if m:
        centers[:m] = seeds
        dist2, nearest = faiss.knn(x, seeds, 1)
        mind = np.sqrt(np.maximum(dist2[:, 0], 0))
        assign = nearest[:, 0].astype(np.int64)
    else:
        mind = np.full(n, np.inf, dtype=np.float32)
        assign = np.zeros(n, dtype=np.int64)
    chosen: list[int] = []
    while len(chosen) < budget and n:
        pick = first if m == 0 and not chosen else int(np.argmax(mind))
        if mind[pick] <= 0:
            break
        chosen.append(pick)
        centers[m + len(chosen) - 1] = x[pick]
        _update(x, norms, x[pick], centers[: m + len(chosen) - 1], mind, assign, m + len(chosen) - 1)
        mind[pick] = 0
    radius = float(mind.max()) if n and (m or chosen) else None
    return np.asarray(chosen, dtype=np.int64), radius


def _update(x: np.ndarray, norms: np.ndarray, center: np.ndarray, old: np.ndarray,
            mind: np.ndarray, assign: np.ndarray, index: int) -> None:
    """Lower `mind` (and set `assign`) where the new center is nearer. No input validation."""
    center_norm = float(center @ center)
    if len(old):
        to_old = np.sqrt(np.maximum(np.einsum("ij,ij->i", old, old) + center_norm - 2 * (old @ center), 0))
        rows = np.flatnonzero(to_old[assign] < 2 * mind * (1 + _SLACK) + _SLACK)
    else:
        rows = np.arange(len(x))
    if len(rows) == 0:
        return
    dots = (x @ center)[rows] if len(rows) > len(x) // 3 else x[rows] @ center
    dist = np.sqrt(np.maximum(norms[rows] + center_norm - 2 * dots, 0))
    closer = dist < mind[rows]
    mind[rows[closer]] = dist[closer]
    assign[rows[closer]] = index
