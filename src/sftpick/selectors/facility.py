"""Facility location (submodular coverage): greedily maximise f(S) = Σ_i max_{j∈S} sim(i, j),
the "+ diversity" option of the Superfiltering repository (Li et al., "Superfiltering:
Weak-to-Strong Data Filtering for Fast Instruction-Tuning", arXiv 2402.00530), with lazy
evaluation (Minoux, "Accelerated greedy algorithms for maximizing submodular set
functions", 1978); f is monotone submodular, so greedy reaches (1 - 1/e) of the optimum
(Nemhauser, Wolsey & Fisher 1978).

sim(i, j) = max(0, cosine) when j is one of the `neighbors` nearest records of i (or j = i),
else 0: a sparse k-NN graph instead of a dense n×n matrix, so 100k records fit. The graph is
exact (faiss brute force, block by block) up to `EXACT_UP_TO` records and an IVF index
(√n lists, `_NPROBE` probed, k-means seeded by `seed`) above. Lazy greedy returns exactly
the plain greedy's picks (ties to the lower position).
"""
from __future__ import annotations

import heapq

import faiss
import numpy as np
import pyarrow as pa
from scipy import sparse

from . import register
from .ranking import check_embeddings, unit_rows

EXACT_UP_TO = 20_000
_NPROBE = 10
_QUERY_BLOCK = 16_384


@register
class Facility:
    name = "facility"
    needs_embeddings = True

    def __init__(self, by: str | None = "ifd", *, ascending: bool = False, neighbors: int = 10, seed: int = 0):
        self.by = by
        self.ascending = ascending
        self.neighbors = neighbors
        self.seed = seed

    def select(self, table: pa.Table, budget: int, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Positions in pick order; `stats_["facility_value"]` is f(S) on the graph."""
        if self.neighbors < 1:
            raise ValueError(f"facility: neighbors={self.neighbors} should be >= 1")
        vectors = check_embeddings(embeddings, table.num_rows, self.name)
        graph = knn_graph(vectors, self.neighbors, seed=self.seed)
        chosen, value = lazy_greedy(graph, budget)
        self.stats_ = {"facility_value": value, "neighbors": self.neighbors,
                       "graph": "exact" if len(vectors) <= EXACT_UP_TO else f"ivf nprobe={_NPROBE}"}
        self.notes_ = [] if len(chosen) >= budget else [
            f"facility: selected {len(chosen)} of {budget}: the other records add nothing "
            "(duplicates of chosen ones)"]
        return chosen


def knn_graph(x: np.ndarray, neighbors: int, *, seed: int = 0) -> sparse.csc_matrix:
    """W[i, j] = max(0, cos(i, j)) for j among the `neighbors` nearest of i, W[i, i] = 1.
    Column j lists the records that j would cover. No input validation."""
    x = unit_rows(x)
    n = len(x)
    k = min(neighbors, n - 1)
    sims, ids = _search(x, k + 1, seed)
    own = np.arange(n)[:, None]
    keep = (ids >= 0) & (ids != own)
    keep &= np.cumsum(keep, axis=1) <= k  # at most k others, even when i is not its own first hit
    rows = np.concatenate([np.repeat(own[:, 0], keep.sum(axis=1)), np.arange(n)])
    cols = np.concatenate([ids[keep], np.arange(n)])
    vals = np.concatenate([np.maximum(sims[keep], 0), np.ones(n, dtype=np.float32)])
    return sparse.csc_matrix((vals.astype(np.float64), (rows, cols)), shape=(n, n))


def _search(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n, dim = x.shape
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(np.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(x)
        index.nprobe = _NPROBE
    index.add(x)
    parts = [index.search(x[i:i + _QUERY_BLOCK], k) for i in range(0, n, _QUERY_BLOCK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def lazy_greedy(graph: sparse.csc_matrix, budget: int) -> tuple[np.ndarray, float]:
    """Greedy maximisation of Σ_i max_{j∈S} W[i, j] with a heap of stale upper bounds.
    Returns the picks (pick order) and f(S). Stops early when no record adds anything."""
    n = graph.shape[0]
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    best = np.zeros(n)  # max_{j∈S} W[i, j] so far
    heap = [(-float(g), j) for j, g in enumerate(np.asarray(graph.sum(axis=0)).ravel())]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap and len(chosen) < budget:
        _, j = heapq.heappop(heap)
        rows, weights = indices[indptr[j]:indptr[j + 1]], data[indptr[j]:indptr[j + 1]]
        gain = float(np.maximum(weights - best[rows], 0).sum())
        if heap and (-gain, j) > heap[0]:
            heapq.heappush(heap, (-gain, j))  # stale bound was too high: re-queue with the fresh one
            continue
        if gain <= 0:
            break
        chosen.append(j)
        best[rows] = np.maximum(best[rows], weights)
    return np.asarray(chosen, dtype=np.int64), float(best.sum())
