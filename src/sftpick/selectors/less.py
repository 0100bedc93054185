"""LESS (Xia et al., "LESS: Selecting Influential Data for Targeted Instruction Tuning", arXiv
2402.04333; princeton-nlp/LESS @ 8abf962): the candidates whose gradients point where the
target task's gradients point.

1. Warmup (`features.warmup`): LoRA on a seeded random `warmup_fraction` (5%) of the
   candidates that have a gradient (at least one record), LESS's recipe: 4 epochs, lr 2e-5,
   linear schedule with 3% warmup, rank 128, one checkpoint per epoch, each weighted by its
   epoch's mean learning rate (renormalised).
2. Features (`features.gradients`, cached by `features.store`): at each checkpoint, the
   candidates' Adam-preconditioned gradients and the targets' plain gradients of the mean
   response-token loss, projected to `less_dim` (8192) dimensions and L2-normalised.
3. Score (`less_scores`): score(z) = max over subtasks s of mean_{z' in s} Σ_c w_c · cos(Γ_c(z),
   ∇_c(z')); the top of the budget, ties to the lower position.

Where the paper and LESS's code differ (the paper is followed; the code offered as an option):
- preconditioning: the paper's Adam update m̂/(√v̂+ε) (bias-corrected); the code
  (`collect_grad_reps.py` `obtain_gradients_with_adam`) takes m'/√(v'+ε), no bias correction,
  ε under the root: `preconditioning="adam-code"`.
- warmup batch: 32, what `warmup_lora_train.sh` gives on one GPU (1 × 32 accumulation); the
  paper's is 128 (its README's checkpoints 105/211/317/420 for 5% of the pool, 4 GPUs):
  `warmup_batch_size=128`. Not the paper's here because `train.finetune` has no gradient
  accumulation: a step's records go through the model in one batch, and 128 sequences of
  2048 tokens do not fit one GPU.
Not as LESS, named here: the subset seed is an option (`warmup_seed`, default 42, the seed
LESS's script really uses, its `--data_seed` never reaching `sample_data_seed`); the LoRA is
`train.finetune`'s (alpha 2r, dropout 0.05, every linear layer; LESS: alpha 4r, dropout 0.1 on
q, k, v, o); features are computed and kept in float32 and stored float16 (LESS casts the
gradients to fp16 before projecting); the projection is sftpick's seeded block Rademacher
matrix (trak's CUDA and CPU projectors make different matrices); subtasks are grouped by
`target_subtask` labels of any sizes (`matching.py` reshapes contiguous equal blocks); ties
go to the lower position (LESS's `torch.sort` is unstable). A candidate whose prompt fills
`max_length` has no response token, so no gradient: it is left out with a counted note
(LESS would give it a NaN feature and a NaN score).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike

from ..errors import DataError, OptionError
from ..examples import Example
from ..features.settings import DEFAULT_DIM, SUBSET_SEED, GradientSettings
from ..models import DEFAULT_LM, model_option, model_revision, resolve_device
from ..options import option
from ..templates import TEMPLATES
from ..train.config import check_config
from . import Selector, register
from .target import TargetedSelector

if TYPE_CHECKING:  # the gradient code loads torch: imported when a selection runs, not with the registry
    from ..features.store import Gradients
    from ..features.warmup import Checkpoint, Warmup
    from ..train.data import Encoded

PRECONDITIONING = ("adam", "adam-code")
_CHUNK = 1024  # training rows scored at a time: bounds the [rows, d] and [rows, m] temporaries


@dataclass(kw_only=True, eq=False)
class GradientSelector(Selector):
    """What LESS and TAGCOS share: the options of the warmup and of the gradient features, and
    the features of the candidates (`candidate_features`). Not registered itself."""

    needs_records = True
    default_scorers = ("len",)  # it chooses by its own features: no IFD pass is needed first
    workdir_name = "gradients"  # LESS and TAGCOS make the same warmup and features: made once for both

    model: str = model_option(DEFAULT_LM, "less, tagcos: the causal LM warmed up and differentiated")
    device: str = option("auto", "less, tagcos: where the model runs: auto | cpu | cuda | cuda:N.")
    lora_rank: int = option(128, "less, tagcos: LoRA rank of the warmup (LESS: 128; 8 keeps a CPU run small).", ge=1)
    warmup_fraction: float = option(0.05, "less, tagcos: share of the candidates the warmup trains on (LESS: 5%; "
                                          "at least one record).", gt=0, le=1, what="a share")
    warmup_epochs: int = option(4, "less, tagcos: warmup epochs, one checkpoint each (LESS: 4).", ge=1)
    warmup_lr: float = option(2e-5, "less, tagcos: peak learning rate of the warmup (LESS: 2e-5, linear, 3% "
                                    "warmup).", gt=0)
    warmup_batch_size: int = option(32, "less, tagcos: records per warmup step, all in one forward pass (LESS's "
                                        "one-GPU script: 32; its paper: 128; 8 on a CPU).", ge=1)
    warmup_seed: int = option(SUBSET_SEED, "less, tagcos: seed of the warmup's random subset (LESS's code: 42).",
                              ge=0)
    less_dim: int = option(DEFAULT_DIM, "less, tagcos: dimensions of the gradients' random projection (LESS: 8192; "
                                        "512-2048 on a CPU).", ge=1)
    preconditioning: str = option("adam", "less, tagcos: the candidates' gradients: adam (the paper's Adam update, "
                                          "bias-corrected) | adam-code (LESS's code: m'/sqrt(v'+eps)).",
                                  choices=PRECONDITIONING)
    max_length: int = option(2048, "less, tagcos: longest sequence of the warmup and the gradients, in tokens "
                                   "(LESS: 2048).", ge=2)
    template: str = option("alpaca", "less, tagcos: prompt template of the warmup and the gradients: none | alpaca "
                                     "| chat.", choices=TEMPLATES)
    grad_token_budget: int | None = option(None, "less, tagcos: padded tokens per gradient micro-batch (default 256 "
                                                 "on a CPU, 4096 on CUDA).", ge=1)

    def check(self) -> None:
        super().check()
        if importlib.util.find_spec("peft") is None:
            raise OptionError(f"strategy {self.name!r} trains LoRA and needs peft: pip install 'sftpick[train]' "
                              "(or pip install peft)")
        model_revision(self.model)  # an unknown model fails now, before any record is read
        resolve_device(self.device)
        check_config(self.gradient_settings().train_config())

    def gradient_settings(self) -> GradientSettings:
        return GradientSettings(model=self.model, device=self.device, lora_rank=self.lora_rank,
                                epochs=self.warmup_epochs, lr=self.warmup_lr, batch_size=self.warmup_batch_size,
                                fraction=self.warmup_fraction, subset_seed=self.warmup_seed,
                                max_length=self.max_length, template=self.template, dim=self.less_dim,
                                token_budget=self.grad_token_budget)

    def gradients(self) -> Gradients:
        """The feature maker, in the work folder (nothing loaded yet); `notes_` starts empty."""
        if getattr(self, "records_", None) is None or getattr(self, "workdir_", None) is None:
            raise DataError(f"strategy {self.name!r} reads the records: give the data file (`sftpick select DATA "
                            "…`, `data=`)")
        from ..features.store import Gradients

        self.notes_ = []
        return Gradients(self.gradient_settings(), self.workdir_)

    def candidate_features(self, gradients: Gradients) -> tuple[Warmup | None, np.ndarray, list[Encoded]]:
        """The warmup (trained or found; None when no candidate has a gradient), the positions of
        the candidates that have a gradient, and their sequences. Those without one are counted
        in `notes_` and `stats_`; the warmup's subset is drawn from those with one (a record
        without a response token cannot be trained on either)."""
        records = self.records_
        encoded, _ = gradients.encode(records)
        kept = np.array([i for i, e in enumerate(encoded) if e is not None], dtype=np.int64)
        excluded = len(records) - len(kept)
        if excluded:
            self.notes_.append(f"{self.name}: {excluded} of {len(records)} candidates left out, never picked: their "
                               f"prompt fills max_length={self.max_length}, no response token to take a gradient of")
        self.stats_ = {"excluded": excluded, "records_scored": len(kept), "feature_dim": self.less_dim,
                       "preconditioning": self.preconditioning}
        if not len(kept):
            return None, kept, []
        warm, fraction = gradients.warmup([records[i] for i in kept])
        if fraction != self.warmup_fraction:
            self.notes_.append(f"{self.name}: warmup_fraction={self.warmup_fraction:g} of {len(kept)} candidates "
                               "holds no record: the warmup trained on one")
        self.stats_.update({"warmup_records": len(warm.rows), "warmup_trained": warm.trained,
                            "checkpoints": [{"name": c.path.name, "step": c.step, "lr_mean": c.lr_mean,
                                             "weight": float(w)} for c, w in zip(warm.checkpoints, warm.lr_weights)]})
        return warm, kept, [encoded[i] for i in kept]

    def checkpoints(self, warm: Warmup | None) -> list[tuple[Checkpoint, float]]:
        """(checkpoint, lr weight) pairs of the warmup; none without one."""
        return [] if warm is None else list(zip(warm.checkpoints, warm.lr_weights.tolist()))

    def finish_stats(self, gradients: Gradients) -> None:
        self.stats_["features_computed"] = gradients.computed
        self.stats_["seconds"] = {stage: round(s, 3) for stage, s in gradients.seconds.items()}


@register
@dataclass(kw_only=True, eq=False)
class Less(TargetedSelector, GradientSelector):
    name = "less"

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions by LESS score, best first (ties to the lower position), candidates with a
        gradient only."""
        gradients = self.gradients()
        targets, target_sequences, subtasks = self._encoded_targets(gradients)  # before the warmup: fail fast
        warm, kept, sequences = self.candidate_features(gradients)
        candidates = [self.records_[i] for i in kept]
        similarity = np.zeros((len(kept), len(targets)))
        for checkpoint, weight in self.checkpoints(warm):
            train = gradients.features(candidates, sequences, checkpoint, self.preconditioning, "train_features")
            target = gradients.features(targets, target_sequences, checkpoint, "sgd", "target_features")
            with gradients.timed("score"):
                similarity += weight * cosines(train, target)
        scores = subtask_max(similarity, subtasks)
        order = kept[np.lexsort((kept, -scores))] if len(kept) else kept
        chosen = order[:budget]
        self.stats_.update({"targets": len(targets), "subtasks": int(len(np.unique(subtasks)))})
        self.finish_stats(gradients)
        if len(chosen) < budget:
            self.notes_.append(f"less: selected {len(chosen)} of {budget}: only {len(kept)} candidates have a gradient")
        return chosen

    def _encoded_targets(self, gradients: Gradients) -> tuple[list[Example], list[Encoded], np.ndarray]:
        """The target examples that have a gradient, their sequences and subtask labels."""
        encoded, _ = gradients.encode(self.targets_)
        kept = [i for i, e in enumerate(encoded) if e is not None]
        if not kept:
            raise DataError(f"less: no target example of {self.target} has a response token within "
                            f"max_length={self.max_length}: nothing to select for")
        if len(kept) < len(encoded):
            lost = sorted(set(self.subtasks_.tolist()) - set(self.subtasks_[kept].tolist()))
            self.notes_.append(f"less: {len(encoded) - len(kept)} of {len(encoded)} target examples left out: their "
                               f"prompt fills max_length={self.max_length}"
                               + (f" ({len(lost)} subtask(s) lost with them)" if lost else ""))
        return [self.targets_[i] for i in kept], [encoded[i] for i in kept], self.subtasks_[kept]


def less_scores(train: Sequence[ArrayLike], targets: Sequence[ArrayLike], lr_weights: ArrayLike,
                subtask_of_target: ArrayLike) -> np.ndarray:
    """LESS influence [n] of each training example on a target task (arXiv 2402.04333;
    princeton-nlp/LESS `less/data_selection/matching.py`):

        score(z) = max_s mean_{z' in s} Σ_c w_c · cos(train[c][z], targets[c][z'])

    `train[c]` [n, d_c] and `targets[c]` [m, d_c] are the features at checkpoint c (LESS:
    projected Adam gradients of the training examples, SGD gradients of the target examples);
    `lr_weights` [c] are the checkpoints' mean learning rates, renormalised to sum 1 as the code
    does; `subtask_of_target` [m] labels each target example with its subtask.

    Follows the code's order: the lr-weighted sum over checkpoints, then the mean within each
    subtask, then the max over subtasks (the paper's formula is the same value: the sum and
    the mean are both linear, only rounding differs). Rows are L2-normalised here; the code
    reads features normalised when they were saved. A zero row has cosine 0 with everything.
    Subtasks are grouped by label, any sizes and order; the code reshapes contiguous
    equal-sized blocks (`reshape(N, n_subtasks, -1)`), the same when the labels come so.
    """
    train, targets, weights, subtask_of_target = _check_less(train, targets, lr_weights, subtask_of_target)
    weights = weights / weights.sum()
    average = _subtask_average(subtask_of_target)
    unit_targets = [_unit_rows(t) for t in targets]
    n = len(train[0])
    scores = np.empty(n)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        similarity = sum(w * (_unit_rows(x[rows]) @ t.T) for w, x, t in zip(weights, train, unit_targets))
        scores[rows] = (similarity @ average).max(axis=1)
    return scores


def cosines(train: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """cos(train[i], targets[j]) [n, m] (float64; a zero row: 0), one checkpoint's term of
    `less_scores`, for a caller that holds one checkpoint's features at a time."""
    return _unit_rows(np.asarray(train, dtype=np.float64)) @ _unit_rows(np.asarray(targets, dtype=np.float64)).T


def subtask_max(similarity: np.ndarray, subtask_of_target: np.ndarray) -> np.ndarray:
    """max over subtasks of the mean of `similarity` [n, m] over each subtask's targets: the
    last step of `less_scores`."""
    return (similarity @ _subtask_average(np.asarray(subtask_of_target))).max(axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    dtype = np.result_type(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True).astype(dtype)
    return np.divide(x, norms, out=np.zeros(x.shape, dtype=dtype), where=norms > 0)


def _subtask_average(subtask_of_target: np.ndarray) -> np.ndarray:
    """[m, n_subtasks] matrix whose product with a row of similarities gives per-subtask means."""
    _, subtask = np.unique(subtask_of_target, return_inverse=True)
    counts = np.bincount(subtask)
    average = np.zeros((len(subtask), len(counts)))
    average[np.arange(len(subtask)), subtask] = 1 / counts[subtask]
    return average


def _check_less(train, targets, lr_weights, subtask_of_target):
    train = [np.asarray(x) for x in train]
    targets = [np.asarray(t) for t in targets]
    weights = np.asarray(lr_weights, dtype=np.float64)
    subtask_of_target = np.asarray(subtask_of_target)
    if not train or len(targets) != len(train) or weights.shape != (len(train),):
        raise ValueError(f"less: expected one train matrix, one target matrix and one lr weight per checkpoint, "
                         f"got {len(train)}, {len(targets)} and {weights.shape}")
    for c, (x, t) in enumerate(zip(train, targets)):
        if x.ndim != 2 or t.ndim != 2 or x.shape[1] != t.shape[1]:
            raise ValueError(f"less: checkpoint {c}: train {x.shape} and targets {t.shape} should be "
                             "[n, d] and [m, d] with the same d")
        if x.shape[0] != train[0].shape[0] or t.shape[0] != targets[0].shape[0]:
            raise ValueError(f"less: checkpoint {c} has {x.shape[0]} train and {t.shape[0]} target rows, "
                             f"checkpoint 0 {train[0].shape[0]} and {targets[0].shape[0]}")
    if subtask_of_target.shape != (targets[0].shape[0],) or not len(subtask_of_target):
        raise ValueError(f"less: subtask_of_target has shape {subtask_of_target.shape}, expected "
                         f"({targets[0].shape[0]},), one label per target row (at least one)")
    if (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"less: lr_weights={weights.tolist()} should be >= 0 with a positive sum")
    return train, targets, weights, subtask_of_target
