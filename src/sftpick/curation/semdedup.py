"""SemDeDup: semantic duplicates found by k-means then cosine similarity within each cluster
(Abbas, Tirumala, Simig, Ganguli & Morcos, "SemDeDup: Data-efficient learning at web-scale
through semantic deduplication", arXiv 2303.09540), following the authors' code
(github.com/facebookresearch/SemDeDup, commit 6b41945):

1. Cluster the L2-normalised vectors with spherical k-means: `faiss.Kmeans(spherical=True,
   niter=100)`, each record assigned to the centroid of largest inner product
   (`clustering/clustering.py`, `Kmeans_with_cos_dist: True` in
   `clustering/configs/openclip/clustering_configs.yaml`).
2. Order each cluster by cosine distance to its centroid, 1 - inner product
   (`clustering/sort_clusters.py`, `rank_within_cluster`): `hard`, the default
   (`which_to_keep: "hard"`, `keep_hard: True`), puts the farthest first; `easy` the nearest
   first; `random` a seeded shuffle (`semdedup.py`).
3. For each record, M = the largest cosine similarity to a record before it in that order
   (`torch.max(torch.triu(sims, diagonal=1), dim=0)` in `semdedup.py`); drop the record when
   M > 1 - eps. So the first record of every group of near-duplicates is kept.

Where sftpick differs:
- It names a twin for each dropped record (the authors keep only a drop flag): the kept record
  of its cluster most similar to it. Rarely no kept record passes 1 - eps (a chain: a ≈ b ≈ c
  but a ≉ c drops b and c, both for matching an earlier record); the twin is then the twin of
  the earlier record it matched best, so it is always kept but may be less similar.
- Ties in the order go to the lower index for every `keep` (the authors' `easy` reverses the
  `hard` list, ties included, so it keeps the last of identical records, sftpick the first);
  `random` shuffles with numpy's generator instead of Python's `random`.
- The number of clusters scales with n (`DEFAULT_CLUSTERS`); the authors fix 50,000.
- A large cluster is processed in blocks of rows whose result is exact; the authors'
  `advance_semdedup.py` instead splits a cluster past `largest_cluster_size_to_process` into
  parts compared only within themselves.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError, OptionError

DEFAULT_EPS = 0.07  # the largest eps of constants.py FINAL_EPS (0.059-0.07, each paired with 0.5): cosine > 0.93
KEEP = ("hard", "easy", "random")  # which record of a group to keep: semdedup.py `which_to_keep`
RECORDS_PER_CLUSTER = 8_800  # LAION-440M in 50,000 clusters (ncentroids in the authors' configs)
KMEANS_ITERATIONS = 100  # niter in clustering_configs.yaml
_BLOCK = 1 << 24  # similarities held at once (64 MiB of float32): rows per block = _BLOCK // cluster size


def _clusters_for(n: int) -> int:
    """ceil(n / 8,800) clusters, within [1, n] (0 for no record): the authors' records per
    cluster at any size."""
    return min(n, max(1, math.ceil(n / RECORDS_PER_CLUSTER)))


DEFAULT_CLUSTERS = _clusters_for  # a rule, n -> clusters


def semdedup(vectors: np.ndarray, *, eps: float = DEFAULT_EPS, n_clusters: int | None = None,
             keep: str = KEEP[0], seed: int = 0) -> np.ndarray:
    """SemDeDup's decision for each row of `vectors` (float32 or float16, [n, d], normalised
    here; an all-zero row stays zero and matches nothing): int64 [n], -1 for a kept record, else
    the row of its twin, the kept record of its cluster it duplicates (see the module docstring).

    `eps`, in (0, 1]: a record is dropped when its cosine similarity to a record before it in
    its cluster's order exceeds 1 - eps. `n_clusters`: k-means clusters (default
    `DEFAULT_CLUSTERS(n)`; more than n means n). `keep`: one of `KEEP`, the order. `seed`: of
    k-means and of the `random` order; the same inputs and seed give the same result.
    Memory: the vectors, a float32 copy, and one cluster at a time, at most `_BLOCK`
    similarities (64 MiB, and a boolean mask as large) of it at once.
    """
    if not 0 < eps <= 1:
        raise OptionError(f"eps={eps!r} should be in (0, 1]: records are duplicates at cosine similarity > 1 - eps")
    if keep not in KEEP:
        raise OptionError(f"keep={keep!r} is not one of {', '.join(KEEP)}")
    if n_clusters is not None and n_clusters < 1:
        raise OptionError(f"n_clusters={n_clusters!r} should be >= 1")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.dtype not in (np.float32, np.float16):
        raise DataError(f"vectors should be a float32 or float16 [n, d] array, got {vectors.dtype} {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise DataError("vectors contain NaN or infinite values")
    n = len(vectors)
    twins = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return twins
    x = _unit_rows(vectors.astype(np.float32))
    k = min(n, n_clusters if n_clusters is not None else DEFAULT_CLUSTERS(n))
    labels, sim_to_centroid = _spherical_kmeans(x, k, seed)
    rng = np.random.default_rng(seed)
    threshold = np.float32(1 - eps)  # compared in float32, as the authors' torch code does
    for cluster in np.unique(labels):
        members = np.flatnonzero(labels == cluster)
        order = members[_order(sim_to_centroid[members], keep, rng)]
        twin_positions = _dedup_ordered(x[order], threshold)
        dropped = twin_positions >= 0
        twins[order[dropped]] = order[twin_positions[dropped]]
    return twins


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero. No input validation."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _spherical_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster label of each row and its inner product with that centroid, as the authors'
    `compute_centroids` makes them (faiss defaults otherwise, so a sample of 256 rows per
    centroid trains it). No input validation."""
    import faiss  # loaded where k-means runs, not with the CLI

    # min_points_per_centroid only silences faiss's warning about few rows per centroid.
    kmeans = faiss.Kmeans(x.shape[1], k, niter=KMEANS_ITERATIONS, seed=seed, spherical=True,
                          min_points_per_centroid=1)
    kmeans.train(x)
    sims, labels = kmeans.index.search(x, 1)
    return labels[:, 0], sims[:, 0]


def _order(sim_to_centroid: np.ndarray, keep: str, rng: np.random.Generator) -> np.ndarray:
    """Positions of a cluster's members in the order SemDeDup walks them (ties by position).
    No input validation."""
    distance = np.float32(1) - sim_to_centroid  # sort_clusters.py sorts on this float32 distance
    position = np.arange(len(distance))
    hard = np.lexsort((position, -distance))
    if keep == "hard":
        return hard
    if keep == "easy":
        return np.lexsort((position, distance))
    return hard[rng.permutation(len(hard))]


def _dedup_ordered(x: np.ndarray, threshold: np.float32) -> np.ndarray:
    """For unit rows in SemDeDup's order: -1 where a row is kept, else the position of its
    kept twin. Row j is dropped when max_{i<j} x_i·x_j > threshold. Blocks of rows keep the
    similarities held to `_BLOCK`. No input validation."""
    m = len(x)
    twins = np.full(m, -1, dtype=np.int64)
    kept = np.ones(m, dtype=bool)
    nearest = np.full(m, -1, dtype=np.int64)
    rows = max(1, _BLOCK // m)
    for start in range(0, m, rows):
        stop = min(start + rows, m)
        sims = x[start:stop] @ x[:stop].T
        sims[np.arange(stop)[None, :] >= np.arange(start, stop)[:, None]] = -np.inf  # only earlier rows count
        block = np.arange(stop - start)
        nearest[start:stop] = sims.argmax(axis=1)
        dropped = sims[block, nearest[start:stop]] > threshold
        kept[start:stop] = ~dropped
        sims[:, ~kept[:stop]] = -np.inf
        best_kept = sims.argmax(axis=1)
        found = dropped & (sims[block, best_kept] > threshold)
        twins[start:stop][found] = best_kept[found]
    for j in np.flatnonzero(~kept & (twins < 0)):  # chains: ascending, so the earlier twin is set
        twins[j] = twins[nearest[j]]
    return twins
