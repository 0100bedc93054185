"""Orthogonal matching pursuit (OMP) and TAGCOS's clustered coreset selection.

TAGCOS (Zhang et al., "TAGCOS: Task-agnostic Gradient Clustered Coreset Selection for
Instruction Tuning Data", arXiv 2407.15235; reference code 2003pro/TAGCOS @ 93a5a38,
`utils/omp.py`: `OrthogonalMP_REG_Parallel` and its `__main__` loop) clusters LESS gradient
features and, in each cluster, uses OMP to pick the records whose weighted gradients add up
closest to the cluster's mean gradient. OMP itself is Pati et al. 1993 / Tropp 2004; the
non-negative, ridge-regularised variant is the one TAGCOS copies from the CRAIG/GradMatch code.

Pure numpy/scipy functions; the selector class that wraps them lives elsewhere.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .clusters import proportional_quotas

# An atom helps when <a, r> > _HELPS · |a| · |b|: far above the rounding noise left in the
# residual r, far below any correlation that lowers |r| by a measurable amount.
_HELPS = 1e-10
_RANK = 1e-12  # eigenvalues of the support's Gram matrix below this share of the largest count as 0


def omp(atoms: ArrayLike, target: ArrayLike, k: int, *, nonnegative: bool = True,
        ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Up to `k` rows of `atoms` [n, d] whose weighted sum approximates `target` [d]: their
    positions in pick order and their weights (same order), minimising
    |Σ_i w_i atoms[i] − target|² + ridge·|w|², with w ≥ 0 when `nonnegative`.

    Each step takes the atom outside the support with the largest correlation
    <atom, residual> (its absolute value when signed; ties to the lower index), then refits
    the weights of the whole support on `target`. Stops with k atoms, or when no atom outside
    the support has a positive correlation (above a relative 1e-10), i.e. none can lower the
    objective. Termination: the picked atom has a positive correlation, so the refit lowers
    the objective strictly and no support ever comes back; a cap of 2(n + k) steps guards
    against rounding anyway.

    With `nonnegative=False, ridge=0` this is textbook OMP, the same support and weights as
    scikit-learn's `OrthogonalMatchingPursuit(fit_intercept=False)` on `atoms.T`.

    Against TAGCOS's `OrthogonalMP_REG_Parallel` (it solves the same ridge objective with
    λ = 1; here `ridge` defaults to 0, plain OMP):
    - refit: exact NNLS on the support, every step. The code solves the ridge normal
      equations unconstrained and drops the most negative atom one at a time; its first pick
      is fitted without ridge or sign check and may keep a negative weight. An atom whose
      NNLS weight is 0 leaves the support and may come back later, as in the code. With an
      exact refit the newest atom always keeps a positive weight, so only older atoms leave.
    - pick: the best atom outside the support. The code takes the argmax over all atoms and
      stops when it repeats one, which with ridge > 0 happens early (the residual is not
      orthogonal to the chosen atoms), and it picks the argmax even when its correlation is
      negative.
    - stop: no tolerance on |r|/|b| (the code stops below 1e-4); a zero target picks nothing
      (the code divides by |b| = 0).
    - dependent atoms (more than d of them, duplicates) are fitted by least norm / NNLS on the
      rank-deficient Gram matrix; scikit-learn stops at the first linearly dependent atom.
    """
    atoms, target = _check_problem(atoms, target, k, ridge)
    return _omp(atoms, target, k, nonnegative=nonnegative, ridge=ridge)


def tagcos_select(features: ArrayLike, labels: ArrayLike, budget: int, *, ridge: float = 1.0,
                  nonnegative: bool = True) -> tuple[np.ndarray, int]:
    """TAGCOS coreset: exactly min(budget, n) distinct row positions of `features` [n, d]
    (LESS gradient features), clusters in ascending label order, each cluster's in pick order;
    and how many of them were filled by cosine because OMP ran out of useful atoms.

    Per cluster (`labels` [n], any ids): a quota from `cluster_quotas`; OMP (`omp`, with
    `ridge` and `nonnegative`) towards the mean of the cluster's rows, repeated on the rows
    not yet picked while the quota is not met (the reference's refill loop); once a round
    picks nothing, the rest of the quota are the remaining rows most cosine-similar to the
    mean (ties to the lower position). Weights are dropped: TAGCOS trains on the members only.

    Paper vs code (2003pro/TAGCOS `utils/omp.py` `__main__`; the paper's side as summarised in
    our implementation notes, its text not re-read for this module):
    - target: the cluster's mean gradient (the paper); the code uses the K-means centroid,
      the same point once Lloyd's iterations have converged.
    - quotas: proportional to cluster size (the paper), summing to the budget exactly, with
      one row per cluster first when the budget covers them all (ours, so no cluster is
      left out); the code takes floor(5% · |cluster|), so clusters under 20 rows get nothing
      and the total falls short of 5%.
    - defaults `ridge=1.0, nonnegative=True` are the code's λ = 1 and `positive=True`.
    - the code's `while budget > 0` loop repeats forever when OMP returns no atom (an all-zero
      or opposite-facing cluster); here such a round ends the loop and the cosine fill,
      counted in the second return value, completes the quota.
    """
    features, labels = _check_clusters(features, labels, budget, ridge)
    _, cluster_of = np.unique(labels, return_inverse=True)
    sizes = np.bincount(cluster_of)
    quotas = cluster_quotas(sizes, min(budget, len(features)))
    members_of = np.split(np.argsort(cluster_of, kind="stable"), np.cumsum(sizes)[:-1])
    chosen, filled = [np.zeros(0, dtype=np.int64)], 0
    for members, quota in zip(members_of, quotas):
        picks, fill = _select_in_cluster(features[members], int(quota), ridge=ridge, nonnegative=nonnegative)
        chosen.append(members[picks])
        filled += fill
    return np.concatenate(chosen), filled


def cluster_quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """How many rows to take from each cluster (`sizes` >= 1): one each when the budget covers
    every cluster, the rest in proportion to size − 1 by largest remainder (ties to the lower
    cluster); a budget below the number of clusters is split in proportion to size. Sums to
    min(budget, Σ sizes), never above a cluster's size. No input validation."""
    budget = min(budget, int(sizes.sum()))
    if budget < len(sizes):
        return proportional_quotas(sizes, budget)
    rest = sizes - 1
    if not rest.sum():
        return np.ones_like(sizes)
    return 1 + proportional_quotas(rest, budget - len(sizes))


def _select_in_cluster(atoms: np.ndarray, quota: int, *, ridge: float,
                       nonnegative: bool) -> tuple[np.ndarray, int]:
    """`quota` positions in `atoms`, pick order, and how many came from the cosine fill."""
    target = atoms.mean(axis=0)
    left = np.arange(len(atoms))
    chosen: list[int] = []
    while len(chosen) < quota:
        picks, _ = _omp(atoms[left], target, quota - len(chosen), nonnegative=nonnegative, ridge=ridge)
        if not len(picks):
            break
        chosen.extend(left[picks].tolist())
        left = np.delete(left, picks)
    fill = quota - len(chosen)
    closest = left[_most_similar(atoms[left], target, fill)]
    return np.concatenate([np.asarray(chosen, dtype=np.int64), closest]), fill


def _most_similar(rows: np.ndarray, target: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` rows most cosine-similar to `target` (zero vectors: cosine 0)."""
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(target)
    cosine = np.divide(rows @ target, norms, out=np.zeros(len(rows)), where=norms > 0)
    return np.lexsort((np.arange(len(rows)), -cosine))[:count]


def _omp(atoms: np.ndarray, target: np.ndarray, k: int, *, nonnegative: bool,
         ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """`omp` without input validation: `atoms` float64 [n, d], `target` float64 [d]."""
    floor = _HELPS * np.linalg.norm(atoms, axis=1) * np.linalg.norm(target)
    outside = np.ones(len(atoms), dtype=bool)  # not in the support
    gram = _Gram(atoms, target)
    support, weights = [], np.zeros(0)
    residual = target
    for _ in range(2 * (len(atoms) + k)):  # a guard only: see the docstring of `omp`
        pick = None if len(support) == k else _best_atom(atoms @ residual, outside, floor, nonnegative)
        if pick is None:
            break
        outside[pick] = False
        trial = support + [pick]
        fitted = _refit(*gram.of(trial), ridge=ridge, nonnegative=nonnegative)
        kept = fitted > 0 if nonnegative else np.ones(len(trial), dtype=bool)
        outside[[a for a, keep in zip(trial, kept) if not keep]] = True
        support, weights = [a for a, keep in zip(trial, kept) if keep], fitted[kept]
        residual = target - weights @ atoms[support]
    return np.asarray(support, dtype=np.int64), weights


def _best_atom(correlation: np.ndarray, outside: np.ndarray, floor: np.ndarray,
               nonnegative: bool) -> int | None:
    gain = correlation if nonnegative else np.abs(correlation)
    eligible = outside & (gain > floor)
    if not eligible.any():
        return None
    return int(np.argmax(np.where(eligible, gain, -np.inf)))


def _refit(gram: np.ndarray, rhs: np.ndarray, *, ridge: float, nonnegative: bool) -> np.ndarray:
    """Weights x minimising |A_Sᵀx − b|² + ridge·|x|² (x ≥ 0 if `nonnegative`), given
    G = A_S A_Sᵀ and c = A_S b; the least-norm x when the atoms are dependent (ridge 0)."""
    values, vectors = np.linalg.eigh(gram + ridge * np.eye(len(gram)))
    keep = values > _RANK * max(values.max(), 0)
    values, vectors = values[keep], vectors[:, keep]
    if not nonnegative:
        return vectors @ ((vectors.T @ rhs) / values)
    # With G + ridge·I = V diag(s) Vᵀ, the objective is |diag(√s) Vᵀx − diag(1/√s) Vᵀc|² + const
    # (c lies in G's range), so NNLS runs on this |S|-row factor rather than on d rows; dependent
    # atoms (more atoms than dimensions, duplicates) only make the factor wide.
    root = np.sqrt(values)
    from scipy.optimize import nnls

    return nnls(root[:, None] * vectors.T, (vectors.T @ rhs) / root)[0]


class _Gram:
    """Inner products among the atoms picked so far and with the target, one row per pick, so
    a refit costs |S|³ rather than d·|S|²."""

    def __init__(self, atoms: np.ndarray, target: np.ndarray):
        self.atoms, self.target = atoms, target
        self.position: dict[int, int] = {}
        self.matrix, self.rhs = np.zeros((0, 0)), np.zeros(0)

    def of(self, support: list[int]) -> tuple[np.ndarray, np.ndarray]:
        for atom in support:
            if atom not in self.position:
                self._add(atom)
        rows = [self.position[atom] for atom in support]
        return self.matrix[np.ix_(rows, rows)], self.rhs[rows]

    def _add(self, atom: int) -> None:
        known = list(self.position)
        vector = self.atoms[atom]
        cross = self.atoms[known] @ vector
        self.matrix = np.block([[self.matrix, cross[:, None]], [cross[None, :], vector @ vector]])
        self.rhs = np.append(self.rhs, vector @ self.target)
        self.position[atom] = len(known)


def _check_problem(atoms: ArrayLike, target: ArrayLike, k: int, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    atoms = np.asarray(atoms, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if atoms.ndim != 2:
        raise ValueError(f"omp: atoms should be a 2-D array [n, d], got shape {atoms.shape}")
    if target.shape != (atoms.shape[1],):
        raise ValueError(f"omp: target has shape {target.shape}, expected ({atoms.shape[1]},) to match atoms")
    if not np.isfinite(atoms).all() or not np.isfinite(target).all():
        raise ValueError("omp: atoms and target should be finite (found NaN or inf)")
    if k < 0:
        raise ValueError(f"omp: k={k} should be >= 0")
    if not ridge >= 0:
        raise ValueError(f"omp: ridge={ridge} should be >= 0")
    return atoms, target


def _check_clusters(features: ArrayLike, labels: ArrayLike, budget: int,
                    ridge: float) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"tagcos: features should be a 2-D array [n, d], got shape {features.shape}")
    if labels.shape != (len(features),):
        raise ValueError(f"tagcos: labels have shape {labels.shape}, expected ({len(features)},), one per row")
    if not np.isfinite(features).all():
        raise ValueError("tagcos: features should be finite (found NaN or inf)")
    if budget < 0:
        raise ValueError(f"tagcos: budget={budget} should be >= 0")
    if not ridge >= 0:
        raise ValueError(f"tagcos: ridge={ridge} should be >= 0")
    return features, labels
