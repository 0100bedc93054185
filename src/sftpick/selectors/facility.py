"""Facility location (submodular coverage): greedily maximise f(S) = Σ_i max_{j∈S} sim(i, j),
the "+ diversity" option of the Superfiltering repository (Li et al., "Superfiltering:
Weak-to-Strong Data Filtering for Fast Instruction-Tuning", arXiv 2402.00530), with lazy
evaluation (Minoux, "Accelerated greedy algorithms for maximizing submodular set
functions", 1978); f is monotone submodular, so greedy reaches (1 - 1/e) of the optimum
(Nemhauser, Wolsey & Fisher 1978).

Two similarity kernels:
- `kernel="cosine"` (the default): sim(i, j) = max(0, cosine) when j is one of the
  `neighbors` nearest records of i (or j = i), else 0: a sparse k-NN graph instead of a
  dense n×n matrix, so 100k records fit. The graph is exact (faiss brute force, block by
  block) up to `EXACT_UP_TO` records and an IVF index (√n lists, `_NPROBE` probed, k-means
  seeded by `seed`) above. It is the default because it scales; on normalised sentence
  embeddings cosine is what "similar" means.
- `kernel="euclidean"`: Superfiltering's own objective (`code_diversity_fla/do_fla.py` runs
  submodlib's dense FacilityLocationFunction with metric "euclidean"), sim(i, j) =
  exp(-‖x_i − x_j‖ / d) for d-dimensional vectors (submodlib's `euclidean_similarity`), over
  all pairs: n² memory, so up to `DENSE_UP_TO` records (use `--pool` above that).
Lazy greedy returns exactly the plain greedy's picks (ties to the lower position).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..errors import OptionError
from ..options import option
from . import Selector, register
from .ranking import unit_rows

EXACT_UP_TO = 20_000
SUPERFILTERING_MAX_LENGTH = 512  # tokens do_fla.py embeds (its tokenizer's limit)
DENSE_UP_TO = 10_000  # the euclidean kernel keeps n×n float64 matrices: 0.8 GB each there
KERNELS = ("cosine", "euclidean")
_NPROBE = 10
_QUERY_BLOCK = 16_384

if TYPE_CHECKING:  # annotations only: scipy loads when a graph is built
    from scipy import sparse


@register
@dataclass(kw_only=True, eq=False)
class Facility(Selector):
    name = "facility"
    needs_embeddings = True

    neighbors: int = option(10, "facility: nearest neighbours per record in the similarity graph.", ge=1)
    kernel: str = option("cosine", "facility: cosine (sparse k-NN graph: scales) | euclidean (Superfiltering's "
                                   "dense submodlib objective, up to 10,000 records).", choices=KERNELS)
    seed: int = option(0, "clusters, facility, pre_experience: random seed of k-means.")
    embed_max_length: int | None = option(None, "facility: tokens of each record the embedder reads (default: 512, "
                                                "Superfiltering's, with --kernel euclidean; else the embedder's own, "
                                                "256 for all-MiniLM-L6-v2).", ge=1)

    def embedding(self) -> tuple[str | None, str, int | None]:
        """With Superfiltering's kernel, its embedding too: all-MiniLM-L6-v2 over the first 512
        tokens of the whole record (`do_fla.py` truncates at the tokenizer's 512, not the 256
        sentence-transformers reads)."""
        length = self.embed_max_length or (SUPERFILTERING_MAX_LENGTH if self.kernel == "euclidean" else None)
        return None, "whole", length

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions in pick order; `stats_["facility_value"]` is f(S) under the kernel."""
        if self.kernel == "euclidean":
            chosen, value = lazy_greedy_dense(euclidean_similarity(vectors), budget)
            self.stats_ = {"facility_value": value, "kernel": "euclidean (dense, submodlib's)"}
        else:
            chosen, value = lazy_greedy(knn_graph(vectors, self.neighbors, seed=self.seed), budget)
            self.stats_ = {"facility_value": value, "kernel": "cosine", "neighbors": self.neighbors,
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
    from scipy import sparse

    return sparse.csc_matrix((vals.astype(np.float64), (rows, cols)), shape=(n, n))


def _search(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

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


def euclidean_similarity(x: np.ndarray) -> np.ndarray:
    """Dense W[i, j] = exp(-‖x_i − x_j‖ / d) (float64, for sums that do not depend on order
    of addition as float32 ones would). No input validation beyond the size limit."""
    n, dim = x.shape
    if n > DENSE_UP_TO:
        raise OptionError(f"facility: kernel='euclidean' keeps an n×n matrix; {n} records is over "
                          f"{DENSE_UP_TO}: choose among fewer with --pool, or use kernel='cosine'")
    x = x.astype(np.float64)
    squared = np.einsum("ij,ij->i", x, x)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0))
    np.fill_diagonal(distance, 0)
    return np.exp(-distance / dim)


def lazy_greedy(graph: sparse.csc_matrix, budget: int) -> tuple[np.ndarray, float]:
    """Greedy maximisation of Σ_i max_{j∈S} W[i, j] on a sparse graph (column j: the
    records j covers), ties to the lower position. Returns the picks (pick order) and f(S)."""
    indptr, indices, data = graph.indptr, graph.indices, graph.data
    return _lazy_greedy(lambda j: (indices[indptr[j]:indptr[j + 1]], data[indptr[j]:indptr[j + 1]]),
                        np.asarray(graph.sum(axis=0)).ravel(), graph.shape[0], budget, tie=1)


def lazy_greedy_dense(similarity: np.ndarray, budget: int) -> tuple[np.ndarray, float]:
    """The same on a dense symmetric similarity matrix, ties to the higher position as
    submodlib's LazyGreedy breaks them (so Superfiltering's picks come out the same)."""
    everyone = slice(None)
    return _lazy_greedy(lambda j: (everyone, similarity[:, j]), similarity.sum(axis=0), len(similarity), budget,
                        tie=-1)


def _lazy_greedy(column, gains: np.ndarray, n: int, budget: int, *, tie: int) -> tuple[np.ndarray, float]:
    """Lazy greedy with a heap of stale upper bounds; `column(j)` gives (rows, weights) of
    what j covers; equal gains go to the lower position (`tie=1`) or the higher (`tie=-1`).
    Stops early when no record adds anything."""
    best = np.zeros(n)  # max_{j∈S} W[i, j] so far
    heap = [(-float(g), tie * j) for j, g in enumerate(gains)]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap and len(chosen) < budget:
        _, key = heapq.heappop(heap)
        j = tie * key
        rows, weights = column(j)
        gain = float(np.maximum(weights - best[rows], 0).sum())
        if heap and (-gain, key) > heap[0]:
            heapq.heappush(heap, (-gain, key))  # stale bound was too high: re-queue with the fresh one
            continue
        if gain <= 0:
            break
        chosen.append(j)
        best[rows] = np.maximum(best[rows], weights)
    return np.asarray(chosen, dtype=np.int64), float(best.sum())
