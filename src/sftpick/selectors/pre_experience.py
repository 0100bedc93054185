"""Cherry LLM's pre-experience sampling (Li et al., "From Quantity to Quality: Boosting LLM
Performance with Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032,
`cherry_seletion/data_by_cluster.py`): cluster the records (k-means, 100 clusters,
random_state 0), keep in every cluster the records whose instruction perplexity lies between
its 25th and 75th percentile, and take `budget // clusters` of them evenly spaced (every
`len(band) // n`-th, in input order). A cluster with fewer records than that gives all of
them, as does a band that is too narrow. The ranking column (`by`, `ppl_ins` from the
instruction-perplexity scorer in Cherry's recipe) is the "confidence" the band is cut on.

The records are clustered, as Cherry does, by the mean-pooled last hidden state of the
Alpaca prompt under the LM that scored `ppl_ins` (Cherry uses one model for both): the score
table's metadata names it, and `embedder` defaults to `lm:` and that model (`lm:smollm2-135m`
when the table does not say); `embed_text="prompt"`. The vectors are saved beside the scores
as `X.embeddings-lm_<model>.parquet`. Another LM is refused, naming the one to pass; any
sentence embedder can stand in (`embedder="all-minilm-l6-v2"`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..embeddings import EMBED_TEXTS, LM_PREFIX
from ..errors import OptionError
from ..models import DEFAULT_LM, embedder_revision
from ..options import option
from ..provenance import table_meta
from . import Selector, register
from .clusters import default_clusters


@register
@dataclass(kw_only=True, eq=False)
class PreExperience(Selector):
    name = "pre_experience"
    needs_embeddings = True
    default_by = "ppl_ins"  # the column its band is cut on, when the scores have it

    by: str | None = "ppl_ins"  # the band is symmetric: `ascending` does not matter
    clusters: int | None = option(None, "pre_experience: number of k-means clusters (default 100, or one per 10 "
                                        "records for a pool under 1,000).", ge=1)
    band: tuple[float, float] = option((25.0, 75.0), "pre_experience: the percentiles of --by kept in each cluster "
                                                     "(Cherry LLM's 25 75).")
    seed: int = option(0, "clusters, facility, pre_experience: random seed of k-means.")
    embedder: str | None = option(None, "pre_experience: what the records are clustered by: lm:MODEL (a causal LM's "
                                        "mean-pooled last hidden state, Cherry's) or a sentence embedder; default: "
                                        "lm: and the model that scored ppl_ins, as Cherry uses one model for both.")
    embed_text: str = option("prompt", "pre_experience: text embedded: prompt (the Alpaca prompt, Cherry's) | whole "
                                       "| instruction.", choices=EMBED_TEXTS)

    def check(self) -> None:
        super().check()
        if self.embedder is not None:
            embedder_revision(self.embedder)  # an unknown model fails now, before any work
        low, high = self.band
        if not 0 <= low <= high <= 100:
            raise OptionError(f"pre_experience: band={low:g} {high:g} should be percentiles with "
                              "0 <= low <= high <= 100")

    def prepare(self, table: pa.Table) -> None:
        """Cluster with the LM that scored `ppl_ins` (the table's metadata names it), as Cherry
        does; an LM named for clustering that is not it is refused (a sentence embedder may
        stand in)."""
        scored_by = next((s.get("model") for s in table_meta(table).get("scorers", []) if s.get("scorer") == "ppl_ins"),
                         None)
        if self.embedder is None:
            self.embedder_ = LM_PREFIX + (scored_by or DEFAULT_LM)
            return
        self.embedder_ = self.embedder
        if scored_by and self.embedder.startswith(LM_PREFIX) and self.embedder[len(LM_PREFIX):] != scored_by:
            raise OptionError(f"pre_experience: embedder={self.embedder!r} clusters with another LM than the one that "
                              f"scored ppl_ins ({scored_by!r}); Cherry LLM uses one model for both: pass "
                              f"--embedder {LM_PREFIX}{scored_by}, or a sentence embedder to stand in")

    def embedding(self) -> tuple[str | None, str, int | None]:
        return getattr(self, "embedder_", self.embedder or LM_PREFIX + DEFAULT_LM), self.embed_text, None

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions chosen, cluster by cluster (Cherry's output order)."""
        if self.by is None:
            raise OptionError("pre_experience keeps a band of a score in each cluster: pass by= (--by ppl_ins)")
        k = min(self.clusters or default_clusters(len(vectors)), len(vectors))
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=k, random_state=self.seed, n_init=10).fit(vectors).labels_
        confidence = table.column(self.by).to_numpy(zero_copy_only=False).astype(np.float64)
        per_cluster = max(1, budget // k)
        picks = [middle_band(np.flatnonzero(labels == c), confidence, per_cluster, *self.band) for c in range(k)]
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
