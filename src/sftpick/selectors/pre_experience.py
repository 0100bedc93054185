"""Cherry LLM's pre-experience sampling (Li et al., "From Quantity to Quality: Boosting LLM
Performance with Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032,
`cherry_seletion/data_by_cluster.py`): cluster the records (k-means, 100 clusters,
random_state 0), keep in every cluster the records whose instruction perplexity lies between
its 25th and 75th percentile, and take `budget // clusters` of them evenly spaced (every
`len(band) // n`-th, in input order). A cluster with fewer records than that gives all of
them, as does a band that is too narrow. The ranking column (`by`, `ppl_ins` from the
instruction-perplexity scorer in Cherry's recipe) is the "confidence" the band is cut on.

The records are clustered, as Cherry does, by the scoring LM's mean-pooled last hidden
state of the Alpaca prompt (`embedder="lm:smollm2-135m"`, `embed_text="prompt"`; saved beside
the scores as `X.embeddings-lm_smollm2-135m.parquet`); any sentence embedder can stand in.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from sklearn.cluster import KMeans

from ..embeddings import EMBED_TEXTS
from ..models import DEFAULT_LM
from . import register
from .clusters import default_clusters
from .ranking import check_embeddings


@register
class PreExperience:
    name = "pre_experience"
    needs_embeddings = True
    default_by = "ppl_ins"  # the column its band is cut on, when the scores have it

    def __init__(self, by: str | None = "ppl_ins", *, ascending: bool = False, clusters: int | None = None,
                 low_percentile: float = 25.0, high_percentile: float = 75.0, seed: int = 0,
                 embedder: str = "lm:" + DEFAULT_LM, embed_text: str = "prompt"):
        self.by = by
        self.ascending = ascending  # the band is symmetric: the direction does not matter
        self.clusters = clusters
        self.low_percentile = low_percentile
        self.high_percentile = high_percentile
        self.seed = seed
        self.embedder = embedder  # read by api.select, which hands `select` these vectors
        self.embed_text = embed_text

    def check(self) -> None:
        if not 0 <= self.low_percentile <= self.high_percentile <= 100:
            raise ValueError(f"pre_experience: low_percentile={self.low_percentile}, high_percentile="
                             f"{self.high_percentile} should be percentiles with 0 <= low <= high <= 100")
        if self.clusters is not None and self.clusters < 1:
            raise ValueError(f"pre_experience: clusters={self.clusters} should be >= 1")
        if self.embed_text not in EMBED_TEXTS:
            raise ValueError(f"pre_experience: embed_text={self.embed_text!r} is not one of {', '.join(EMBED_TEXTS)}")

    def select(self, table: pa.Table, budget: int, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Positions chosen, cluster by cluster (Cherry's output order)."""
        self.check()
        if self.by is None:
            raise ValueError("pre_experience keeps a band of a score in each cluster: pass by= (--by ppl_ins)")
        vectors = check_embeddings(embeddings, table.num_rows, self.name)
        k = min(self.clusters or default_clusters(len(vectors)), len(vectors))
        labels = KMeans(n_clusters=k, random_state=self.seed, n_init=10).fit(vectors).labels_
        confidence = table.column(self.by).to_numpy(zero_copy_only=False).astype(np.float64)
        per_cluster = max(1, budget // k)
        picks = [middle_band(np.flatnonzero(labels == c), confidence, per_cluster, self.low_percentile,
                             self.high_percentile) for c in range(k)]
        chosen = np.concatenate(picks)[:budget]
        self.stats_ = {"clusters": k, "per_cluster": per_cluster}
        self.notes_ = [] if len(chosen) >= budget else [
            f"pre_experience: selected {len(chosen)} of {budget}: {k} clusters × {per_cluster} per cluster, "
            "and some clusters (or their bands) hold fewer"]
        return chosen


def middle_band(members: np.ndarray, confidence: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """Cherry's `sample_middle_confidence_data` for one cluster: `members` (input order) whose
    confidence is within its [low, high] percentiles, `n` of them evenly spaced. Records with no
    value (NaN) are left out of the band."""
    if len(members) < n:
        return members
    values = confidence[members]
    lower, upper = np.nanpercentile(values, [low, high])
    band = members[(values >= lower) & (values <= upper)]
    return band if len(band) < n else band[:: len(band) // n][:n]
