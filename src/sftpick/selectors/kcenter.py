"""k-center greedy (coverage): pick the record farthest from every record chosen so far.

Gonzalez's greedy (1985) is a 2-approximation of the smallest covering radius; Sener &
Savarese use it as the core-set of active learning ("Active Learning for Convolutional
Neural Networks: A Core-Set Approach", arXiv 1708.00489), and MoDS (Du et al., "MoDS:
Model-oriented Data Selection for Instruction Tuning", arXiv 2311.15653) picks its seed and
its "necessity" data with it, the latter starting from the seed already chosen (`centers`).

Distances are Euclidean between the embeddings. Without `centers` the first pick is the
best-scored record (ties by `row`), so the result depends on the data only. Exact, but not
the plain loop's n matrix-vector products per pick: the `_CANDIDATES` farthest rows are
kept up to date pick by pick, the others only bounded (a row's distance to its nearest
center never grows). While the best candidate beats that bound it is the farthest row;
otherwise every row catches up on the centers added meanwhile in one matrix product, and a
new candidate set is drawn. Ties go to the lower position, as in the plain loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import DataError, OptionError
from ..io import read_dataset
from ..options import option
from . import Selector, register
from .ranking import check_embeddings, score_order

_CANDIDATES = 1024  # rows kept up to date pick by pick
_CHUNK = 16384  # rows per matrix product when every row catches up
_SAME = 1e-6  # squared distances below this share of |x|² + |c|² count as 0 (duplicates)


@register
@dataclass(kw_only=True, eq=False)
class KCenter(Selector):
    name = "kcenter"
    needs_embeddings = True

    seed_set: Path | None = option(None, "kcenter: records already chosen (an input file); new picks start far "
                                         "from them.")
    centers: np.ndarray | None = None  # Python API: vectors already chosen, in the embeddings' space

    def check(self) -> None:
        super().check()
        if self.seed_set is not None and not Path(self.seed_set).is_file():
            raise OptionError(f"seed_set={str(self.seed_set)!r}: no such file")

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions in pick order; `stats_["covering_radius"]` is the largest distance from
        a record of the table to its nearest center (chosen or given) afterwards."""
        centers = self.centers if self.seed_set is None else self.embed_(read_dataset(self.seed_set).examples)
        seeds = None if centers is None else check_embeddings(centers, len(centers), self.name + " centers")
        if seeds is not None and seeds.shape[1] != vectors.shape[1]:
            raise DataError(f"kcenter: centers have {seeds.shape[1]} dimensions, the embeddings {vectors.shape[1]}")
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
    m = 0 if seeds is None else len(seeds)
    centers = np.empty((m + budget, dim), dtype=np.float32)
    if m:
        centers[:m] = seeds
    farthest = _Farthest(x, centers)
    chosen: list[int] = []
    while len(chosen) < budget and n:
        pick, distance = (first, np.inf) if m == 0 and not chosen else farthest(m + len(chosen))
        if distance <= 0:
            break
        centers[m + len(chosen)] = x[pick]
        chosen.append(pick)
    radius = None
    if n and (m or chosen):
        radius = float(np.sqrt(farthest(m + len(chosen))[1]))
    return np.asarray(chosen, dtype=np.int64), radius


class _Farthest:
    """Squared distance of each row to its nearest center: exact for the candidates, an upper
    bound (`self.bound`) for the other rows until they catch up."""

    def __init__(self, x: np.ndarray, centers: np.ndarray):
        self.x, self.centers = x, centers
        self.norms = np.einsum("ij,ij->i", x, x)
        self.nearest = np.full(len(x), np.inf, dtype=np.float32)
        self.everyone = 0  # centers applied to every row
        self.candidates = np.arange(0)  # positions; their vectors, norms, distances in cx, cnorms, cnearest
        self.seen = 0  # centers applied to the candidates
        self.bound = np.inf  # >= `nearest` of every row outside the candidates

    def __call__(self, count: int) -> tuple[int, float]:
        """(position, squared distance) of the row farthest from the first `count` centers."""
        while True:
            if len(self.candidates) and count > self.seen:
                near = _nearest(self.cx, self.cnorms, self.centers[self.seen:count])
                self.cnearest = np.minimum(self.cnearest, near)
                self.seen = count
            if len(self.candidates):
                best = int(np.argmax(self.cnearest))
                if self.cnearest[best] > self.bound or len(self.candidates) == len(self.x):
                    return int(self.candidates[best]), float(self.cnearest[best])
            self._refresh(count)

    def _refresh(self, count: int) -> None:
        """Every row catches up; the farthest become the candidates (copied, contiguous)."""
        if len(self.candidates):
            self.nearest[self.candidates] = self.cnearest
        if count > self.everyone:
            for start in range(0, len(self.x), _CHUNK):
                rows = slice(start, start + _CHUNK)
                near = _nearest(self.x[rows], self.norms[rows], self.centers[self.everyone:count])
                self.nearest[rows] = np.minimum(self.nearest[rows], near)
        self.everyone = self.seen = count
        size = min(_CANDIDATES, len(self.x))
        split = np.argpartition(-self.nearest, size - 1)
        self.candidates = np.sort(split[:size])
        self.cx, self.cnorms = self.x[self.candidates], self.norms[self.candidates]
        self.cnearest = self.nearest[self.candidates]
        self.bound = float(self.nearest[split[size:]].max()) if size < len(self.x) else -np.inf


def _nearest(x: np.ndarray, norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared distance of each row of `x` to its nearest of `centers`."""
    scale = norms[:, None] + np.einsum("ij,ij->i", centers, centers)[None, :]
    dist = scale - 2 * (x @ centers.T)
    dist[dist <= _SAME * scale] = 0  # float32 rounding leaves ~1e-7 where the vectors are equal
    return dist.min(axis=1)
