"""Targeted selection: score or pick training records by their similarity to examples of a
target task.

- LESS (Xia et al., "LESS: Selecting Influential Data for Targeted Instruction Tuning",
  arXiv 2402.04333; princeton-nlp/LESS @ 8abf962): `less_scores`.
- RDS+ (Ivison et al., "Large-Scale Data Selection for Instruction Tuning", arXiv 2503.01807;
  hamishivi/automated-instruction-selection @ df71a04): `position_weighted_mean` pools an
  LM's hidden states into one vector per text, `round_robin` picks from the cosine matrix.

Pure numpy functions; the selector classes that wrap them live elsewhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

_CHUNK = 1024  # training rows scored at a time: bounds the [rows, d] and [rows, m] temporaries


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


def position_weighted_mean(hidden: ArrayLike, mask: ArrayLike) -> np.ndarray:
    """RDS+ text embedding [b, h] from an LM's last hidden states `hidden` [b, t, h] and the
    attention `mask` [b, t] (1 = real token), arXiv 2503.01807;
    hamishivi/automated-instruction-selection `minimal_multitask/compute_influence_cosinesim.py`
    (`--pooling weighted_mean`):

        e = Σ_i w_i h_i,   w_i = p_i / Σ_j p_j,   p_i = 1, 2, …, L over the L real tokens

    i.e. the SGPT position-weighted mean the paper names, later tokens weighing more. The
    code weights all positions of the tensor (t / Σ t, 1-based) with no mask, which is right
    only at batch size 1, its setting; here positions count real tokens only, from the first
    one, so a left- or right-padded row pools exactly as the row alone. The result is at
    least float32 (the code's bf16 states times its fp32 weights give fp32).
    """
    hidden, mask = _check_pooling(hidden, mask)
    dtype = np.result_type(hidden, np.float32)
    positions = np.cumsum(mask, axis=1) * mask
    weights = (positions / positions.sum(axis=1, keepdims=True)).astype(dtype)
    return np.einsum("bt,bth->bh", weights, hidden.astype(dtype, copy=False))


def round_robin(similarity: ArrayLike, budget: int, target_order: np.ndarray | None = None, *,
                skip_taken: bool = True) -> np.ndarray:
    """RDS+ round-robin selection, arXiv 2503.01807; hamishivi/automated-instruction-selection
    `minimal_multitask/get_top_influences.py --selection_method max`: min(budget, n) distinct
    candidate positions, in pick order, from `similarity` [n_candidates, n_targets].

    Pass after pass, each target in `target_order` (default 0..n_targets−1; the code shuffles
    its query set with seed 42, give that permutation here) takes its most similar candidate
    not yet taken (ties to the lower index, as the code's stable sort); stops at the budget.

    Duplicates: with `skip_taken=True` (default, the intended "each query adds its nearest
    remaining point") a target passes over candidates other targets took, so every turn adds
    a record. `skip_taken=False` is the code's behaviour: the target pops its best remaining
    candidate and, if another target already took it, loses the turn. The code finishes the
    pass and truncates to the budget, the same records as stopping at it; it raises
    IndexError when a list runs out, which cannot happen here before every candidate is taken.

    Multi-task RDS+ (`get_top_aggregated_influences.py`) is this function on one column per
    task, each the max over that task's queries, with `skip_taken=False` to match its code.
    Not the heap of `get_top_optimized.py`, which ranks by the max over queries.
    """
    similarity, budget, order = _check_round_robin(similarity, budget, target_order)
    n = len(similarity)
    budget = min(budget, n)
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    start = 2 * (budget // len(order) + 1) + 16
    rankings = [_Ranking(similarity[:, target], start) for target in order]
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    while len(chosen) < budget:
        for ranking in rankings:
            candidate = ranking.pop_untaken(taken) if skip_taken else ranking.pop()
            if candidate is None or taken[candidate]:
                continue
            taken[candidate] = True
            chosen.append(candidate)
            if len(chosen) == budget:
                break
    return np.asarray(chosen, dtype=np.int64)


class _Ranking:
    """One target's candidates, best first (ties to the lower index). Sorted a prefix at a time,
    the prefix doubled when used up, so a target that takes few candidates never sorts all n."""

    def __init__(self, scores: np.ndarray, start: int):
        self.scores, self.cursor = scores, 0
        self.order = _best_first(scores, start)

    def pop(self) -> int | None:
        if self.cursor == len(self.order):
            if len(self.order) == len(self.scores):
                return None
            self.order = _best_first(self.scores, 2 * len(self.order))
        self.cursor += 1
        return int(self.order[self.cursor - 1])

    def pop_untaken(self, taken: np.ndarray) -> int | None:
        candidate = self.pop()
        while candidate is not None and taken[candidate]:
            candidate = self.pop()
        return candidate


def _best_first(scores: np.ndarray, count: int) -> np.ndarray:
    """The first `count` positions by (score descending, position ascending)."""
    n = len(scores)
    if count >= n:
        return np.lexsort((np.arange(n), -scores))
    kth = np.partition(-scores, count - 1)[count - 1]
    above = np.flatnonzero(-scores < kth)
    tied = np.flatnonzero(-scores == kth)[:count - len(above)]  # the lower positions among ties
    top = np.concatenate([above, tied])
    return top[np.lexsort((top, -scores[top]))]


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


def _check_pooling(hidden, mask):
    hidden, mask = np.asarray(hidden), np.asarray(mask)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"rds: hidden {hidden.shape} and mask {mask.shape} should be [b, t, h] and [b, t]")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("rds: mask should hold 0 (padding) and 1 (real token) only")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"rds: rows {empty.tolist()} have no real token to pool")
    return hidden, mask.astype(np.int64)


def _check_round_robin(similarity, budget, target_order):
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2:
        raise ValueError(f"rds: similarity should be [n_candidates, n_targets], got shape {similarity.shape}")
    if np.isnan(similarity).any():
        raise ValueError("rds: similarity contains NaN")
    if budget < 0:
        raise ValueError(f"rds: budget={budget} should be >= 0")
    n_targets = similarity.shape[1]
    order = np.arange(n_targets) if target_order is None else np.asarray(target_order)
    if sorted(order.tolist()) != list(range(n_targets)):
        raise ValueError(f"rds: target_order should be a permutation of 0..{n_targets - 1}")
    if n_targets == 0 and budget > 0 and len(similarity):
        raise ValueError("rds: similarity has no target column to select by")
    return similarity, int(budget), order
