"""K-means stratified selection: cluster the embeddings and take the best-scored records of
every cluster, so each region of the data gets its share. Cherry LLM's pre-experience
sampling (Li et al., "From Quantity to Quality: Boosting LLM Performance with
Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032) clusters the
instruction embeddings into 100 clusters and samples from each; here the records inside a
cluster are taken best score first.

Quotas: `proportional` to cluster size (largest remainder), or `equal` (a cluster smaller
than its share gives the rest to the larger ones). K-means is scikit-learn's (k-means++
start), seeded by `seed`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import DataError
from ..options import option
from . import Selector, register
from .ranking import score_order

QUOTAS = ("proportional", "equal")
DEFAULT_CLUSTERS = 100


@register
@dataclass(kw_only=True, eq=False)
class Clusters(Selector):
    name = "clusters"
    needs_embeddings = True

    clusters: int | None = option(None, "clusters: number of k-means clusters (default 100, or one per 10 records "
                                        "for a pool under 1,000).", ge=1)
    quota: str = option("proportional", "clusters: per-cluster quota, proportional | equal.", choices=QUOTAS)
    seed: int = option(0, "clusters, facility, pre_experience: random seed of k-means.")

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions chosen, in score order."""
        k = self.clusters or default_clusters(len(vectors))
        if not 1 <= k <= len(vectors):
            raise DataError(f"clusters: clusters={k} should be between 1 and the "
                            f"{len(vectors)} records in the pool")
        labels = kmeans_labels(vectors, k, seed=self.seed)
        sizes = np.bincount(labels, minlength=k)
        quotas = (proportional_quotas if self.quota == "proportional" else equal_quotas)(sizes, budget)
        chosen = take_by_quota(score_order(table, self.by, self.ascending), labels, quotas)
        self.stats_ = {"clusters": k, "clusters_nonempty": int((sizes > 0).sum()),
                       "clusters_sampled": int((quotas > 0).sum())}
        self.notes_ = []
        return chosen


def default_clusters(n: int) -> int:
    """Cherry LLM's 100 clusters, or fewer for a small pool: at least ~10 records a cluster."""
    return min(DEFAULT_CLUSTERS, max(1, n // 10))


def kmeans_labels(x: np.ndarray, k: int, *, seed: int = 0, fit_per_cluster: int = 256) -> np.ndarray:
    """Cluster of each row: scikit-learn's k-means (k-means++ start) fitted on at most
    `fit_per_cluster`·k rows drawn with `seed`, then every row assigned. No input validation."""
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= fit_per_cluster * k else x[np.sort(rng.choice(len(x), fit_per_cluster * k, replace=False))]
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample)
    return kmeans.predict(x).astype(np.int64)


def proportional_quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """budget·size/n rounded down, the remainder to the largest fractions (ties: lower cluster)."""
    ideal = budget * sizes / sizes.sum()
    quotas = np.floor(ideal).astype(np.int64)
    extra = budget - int(quotas.sum())
    order = np.lexsort((np.arange(len(sizes)), -(ideal - quotas)))
    quotas[order[:extra]] += 1
    return quotas


def equal_quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """The same share for every cluster, capped at its size; what is left goes one each to the
    largest clusters that still have records (ties: lower cluster)."""
    low, high = 0, int(sizes.max())  # the largest level with sum(min(sizes, level)) <= budget
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if np.minimum(sizes, mid).sum() <= budget else (low, mid - 1)
    level = low
    quotas = np.minimum(sizes, level)
    extra = budget - int(quotas.sum())
    room = np.flatnonzero(sizes > quotas)
    room = room[np.lexsort((room, -sizes[room]))]
    quotas[room[:extra]] += 1
    return quotas


def take_by_quota(order: np.ndarray, labels: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    """The first `quotas[c]` positions of each cluster c along `order`."""
    ranked = labels[order]
    by_cluster = np.argsort(ranked, kind="stable")
    starts = np.searchsorted(ranked[by_cluster], ranked[by_cluster], side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[by_cluster] = np.arange(len(order)) - starts
    return order[rank < quotas[ranked]]
