"""TAGCOS (Zhang et al., "TAGCOS: Task-agnostic Gradient Clustered Coreset Selection for
Instruction Tuning Data", arXiv 2407.15235; 2003pro/TAGCOS @ 93a5a38): a coreset whose
gradients add up to the pool's, cluster by cluster, with no target task.

1. Features: LESS's (the same warmup and Adam-preconditioned gradient features as
   `selectors/less.py`, made and cached by `features.store`): per candidate
   f(z) = Σ_c w_c · Γ̂_c(z), the checkpoints' unit features weighted by their mean learning
   rates (renormalised), not normalised again (`utils/mean_grad.py`).
2. K-means on f (`clusters`, 100 by default; k-means++, seeded by `seed`; scikit-learn's,
   fitted on at most 256 rows a cluster: `clusters.kmeans_labels`).
3. Per cluster, OMP towards the cluster's mean feature, the budget split in proportion to
   cluster size (`omp.tagcos_select`: non-negative OMP with ridge `omp_ridge` = 1, the code's
   λ; repeated on the rows left while the cluster's share is not met; it always ends, and
   returns exactly min(budget, candidates); rows OMP cannot place are the ones closest in
   cosine to the mean, counted in `stats_["filled_by_cosine"]`).

Where the paper and TAGCOS's code differ (the paper is followed): the target of OMP is the
cluster's mean gradient (the code: the K-means centroid, the same point once Lloyd's
iterations converge); shares are proportional to cluster size and sum to the budget (the
code: floor(5% · |cluster|), nothing for clusters under 20, the total short of 5%); the code's
refill loop never ends when OMP returns nothing, here it stops and the cosine fill completes
the share. The checkpoints are LESS's, one per warmup epoch (the paper builds on LESS's
warmup); the code used steps 10, 20 and 30 of a 4-epoch warmup stopped by hand (README:
"manual stop at 30 steps"): `checkpoint_steps=[10, 20, 30]`, each weighted by the mean learning
rate since the one before, as its README's weights are. Not as the code either: K-means is seeded and runs on the
candidates in table order (the code: unseeded, rows in `os.listdir` order), and candidates
whose prompt fills `max_length` (no response token, no gradient) are left out with a counted
note.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from ..errors import OptionError
from ..features.settings import GradientSettings
from ..options import option
from . import register
from .clusters import default_clusters, kmeans_labels
from .less import GradientSelector
from .omp import tagcos_select


@register
@dataclass(kw_only=True, eq=False)
class Tagcos(GradientSelector):
    name = "tagcos"

    clusters: int | None = option(None, "tagcos: number of k-means clusters of the gradient features (default 100, "
                                        "or one per 10 records for a pool under 1,000).", ge=1)
    seed: int = option(0, "tagcos: random seed of k-means.")
    omp_ridge: float = option(1.0, "tagcos: ridge weight of OMP's refit (TAGCOS's code: 1; 0: plain non-negative "
                                   "OMP).", ge=0)
    checkpoint_steps: list[int] = option([], "tagcos: warmup checkpoints after these optimizer steps (repeat the "
                                             "flag), training stopped after the last, as TAGCOS's code (10 20 "
                                             "30); default: one per epoch, LESS's.", repeat=True)

    def check(self) -> None:
        super().check()
        steps = list(self.checkpoint_steps)
        if steps != sorted(set(steps)) or any(step < 1 for step in steps):
            raise OptionError(f"tagcos: checkpoint_steps={steps} should be ascending optimizer steps, each >= 1")

    def gradient_settings(self) -> GradientSettings:
        return replace(super().gradient_settings(), checkpoint_steps=tuple(self.checkpoint_steps))

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions chosen, clusters in label order, each cluster's in OMP's pick order."""
        gradients = self.gradients()
        warm, kept, sequences = self.candidate_features(gradients)
        candidates = [self.records_[i] for i in kept]
        features = np.zeros((len(kept), self.less_dim), dtype=np.float32)
        for checkpoint, weight in self.checkpoints(warm):
            features += np.float32(weight) * gradients.features(candidates, sequences, checkpoint,
                                                                self.preconditioning, "train_features")
        chosen = np.zeros(0, dtype=np.int64)
        k, filled, labels = 0, 0, np.zeros(0, dtype=np.int64)
        if len(kept):
            k = min(self.clusters or default_clusters(len(kept)), len(kept))
            with gradients.timed("select"):
                labels = kmeans_labels(features, k, seed=self.seed)
                picks, filled = tagcos_select(features, labels, budget, ridge=self.omp_ridge)
            chosen = kept[picks]
            if self.clusters and k < self.clusters:
                self.notes_.append(f"tagcos: clusters={self.clusters} is more than the {len(kept)} candidates with a "
                                   f"gradient: {k} clusters")
        sizes = np.bincount(labels, minlength=k)
        picked = np.bincount(labels[picks], minlength=k) if len(kept) else sizes
        self.stats_.update({"clusters": k, "clusters_nonempty": int((sizes > 0).sum()),
                            "cluster_sizes": sizes.tolist(), "picks_per_cluster": picked.tolist(),
                            "filled_by_cosine": int(filled)})
        self.finish_stats(gradients)
        if len(chosen) < budget:
            self.notes_.append(f"tagcos: selected {len(chosen)} of {budget}: only {len(kept)} candidates have a "
                               "gradient")
        return chosen
