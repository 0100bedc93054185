"""OMP / TAGCOS, LESS, RDS+ and DiverseEvol's k-center against scikit-learn, exhaustive search
and plain reference loops."""
import itertools
import warnings

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.linear_model import OrthogonalMatchingPursuit

from sftpick.selectors.kcenter import kcenter_greedy
from sftpick.selectors.less import less_scores
from sftpick.selectors.omp import cluster_quotas, omp, tagcos_select
from sftpick.selectors.rds import position_weighted_mean, round_robin


def nnls_residual(atoms, target, support, ridge=0.0):
    """Optimal non-negative weights on `support` and the residual norm they leave."""
    a = atoms[list(support)].T
    if ridge:
        a = np.vstack([a, np.sqrt(ridge) * np.eye(len(support))])
        target = np.concatenate([target, np.zeros(len(support))])
    weights, _ = nnls(a, target)
    return weights, np.linalg.norm(atoms[list(support)].T @ weights - target[:atoms.shape[1]])


def residual_of(atoms, target, picks, weights):
    return np.linalg.norm(target - weights @ atoms[picks])


# --- OMP -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n, d, k", [(30, 20, 5), (50, 12, 8), (12, 40, 10), (40, 40, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_signed_omp_matches_scikit_learn(n, d, k, seed):
    rng = np.random.default_rng(seed)
    atoms, target = rng.normal(size=(n, d)), rng.normal(size=d)
    picks, weights = omp(atoms, target, k, nonnegative=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=False).fit(atoms.T, target)
    assert sorted(picks.tolist()) == np.flatnonzero(reference.coef_).tolist()
    np.testing.assert_allclose(weights, reference.coef_[picks], atol=1e-8, rtol=0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_nonnegative_omp_is_optimal_on_orthonormal_atoms(seed, k):
    """With orthonormal atoms the best k-support is the k largest positive projections, which
    greedy finds: the residual equals the exhaustive optimum over all supports of size <= k."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(8, 8)))[0].T
    atoms = basis[:6] * rng.choice([-1, 1], size=(6, 1))
    target = rng.normal(size=8)
    picks, weights = omp(atoms, target, k)
    best = min(nnls_residual(atoms, target, s)[1]
               for size in range(1, k + 1) for s in itertools.combinations(range(6), size))
    assert residual_of(atoms, target, picks, weights) == pytest.approx(best, abs=1e-10)
    positive = atoms @ target > 0
    assert set(picks.tolist()) == set(np.argsort(-(atoms @ target))[:min(k, positive.sum())].tolist())


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_nonnegative_omp_on_tiny_inputs_keeps_greedy_guarantees(seed, ridge):
    rng = np.random.default_rng(seed)
    n, d = rng.integers(2, 9), rng.integers(2, 6)
    atoms, target = rng.normal(size=(n, d)), rng.normal(size=d)

    def objective(picks, weights):
        return residual_of(atoms, target, picks, weights) ** 2 + ridge * weights @ weights

    previous = target @ target  # no atom at all
    for k in (1, 2, 3):
        picks, weights = omp(atoms, target, k, ridge=ridge)
        assert len(picks) <= k and len(set(picks.tolist())) == len(picks) and (weights > 0).all()
        if k == 1 and len(picks):  # greedy's first step: the atom most correlated with the target
            assert picks.tolist() == [int(np.argmax(atoms @ target))]
        # the weights are the optimal non-negative (ridge) weights of the support picked
        expected = nnls_residual(atoms, target, picks, ridge)[0] if len(picks) else np.zeros(0)
        np.testing.assert_allclose(weights, expected, atol=1e-9)
        # a run with a larger k continues the smaller one, and each step lowers the objective
        assert objective(picks, weights) <= previous + 1e-12
        previous = objective(picks, weights)
        if ridge == 0 and len(picks):  # never better than the best support of its size
            optimum = min(nnls_residual(atoms, target, s)[1] for s in itertools.combinations(range(n), len(picks)))
            assert residual_of(atoms, target, picks, weights) >= optimum - 1e-10
        if len(picks) < k:  # stopped early: no atom outside the support can lower the objective
            residual = target - weights @ atoms[picks]
            assert (np.delete(atoms, picks, axis=0) @ residual <= 1e-9).all()


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_nonnegative_omp_with_more_atoms_than_dimensions(seed, ridge):
    """8 atoms in 3 dimensions, k = 6: supports become linearly dependent and refits drop
    atoms (about one run in ten here); the weights stay optimal for the support and an early
    stop still means no atom outside the support correlates positively with the residual."""
    rng = np.random.default_rng(seed)
    atoms, target = rng.normal(size=(8, 3)), rng.normal(size=3)
    picks, weights = omp(atoms, target, 6, ridge=ridge)
    assert len(set(picks.tolist())) == len(picks) <= 6 and (weights > 0).all()
    if len(picks):
        best, _ = nnls_residual(atoms, target, picks, ridge)
        objective = lambda w: residual_of(atoms, target, picks, w) ** 2 + ridge * w @ w  # noqa: E731
        assert objective(weights) == pytest.approx(objective(best), abs=1e-9)
    if len(picks) < 6:
        residual = target - weights @ atoms[picks]
        assert (np.delete(atoms, picks, axis=0) @ residual <= 1e-9).all()


def test_omp_ties_go_to_the_lower_index():
    atoms = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # rows 1 and 2 are the same atom
    picks, weights = omp(atoms, np.array([3.0, 1.0]), 3)
    assert picks.tolist() == [1, 0]
    np.testing.assert_allclose(weights, [3.0, 1.0])


def test_ridge_weights_solve_tagcos_normal_equations():
    """With every weight positive, x solves (A_S A_Sᵀ + λI) x = A_S b, TAGCOS's system."""
    rng = np.random.default_rng(3)
    atoms = np.abs(rng.normal(size=(20, 10)))
    target = atoms[:5].sum(axis=0)
    picks, weights = omp(atoms, target, 4, ridge=1.0)
    a = atoms[picks]
    np.testing.assert_allclose((a @ a.T + np.eye(len(picks))) @ weights, a @ target, rtol=1e-9)


@pytest.mark.parametrize("atoms, target, nonnegative, expected", [
    (np.eye(3), np.zeros(3), True, []),  # zero target
    (np.zeros((4, 3)), np.ones(3), True, []),  # zero atoms
    (-np.eye(3), np.ones(3), True, []),  # every atom faces away from the target
    (-np.eye(3), np.ones(3), False, [0, 1, 2]),  # ... which signed OMP uses with negative weights
    (np.array([[1.0, 1.0]] * 4), np.array([2.0, 2.0]), True, [0]),  # duplicates: one is enough
    (np.array([[1.0, 1.0]] * 4), np.array([2.0, 2.0]), False, [0]),
])
def test_omp_terminates_on_degenerate_input(atoms, target, nonnegative, expected):
    picks, _ = omp(atoms, target, 10, nonnegative=nonnegative)
    assert picks.tolist() == expected


def test_omp_k_zero_and_k_above_n():
    atoms = np.random.default_rng(0).normal(size=(5, 8))
    assert omp(atoms, atoms.sum(axis=0), 0)[0].tolist() == []
    assert len(omp(atoms, atoms.sum(axis=0), 50, nonnegative=False)[0]) == 5


def test_omp_rejects_bad_input():
    with pytest.raises(ValueError, match="target has shape"):
        omp(np.eye(3), np.ones(4), 1)
    with pytest.raises(ValueError, match="finite"):
        omp(np.full((2, 2), np.nan), np.ones(2), 1)
    with pytest.raises(ValueError, match="k=-1"):
        omp(np.eye(2), np.ones(2), -1)


# --- TAGCOS --------------------------------------------------------------------------------

def test_cluster_quotas_give_small_clusters_their_share():
    # TAGCOS's floor(5% |c|) gives [5, 0, 0] here: clusters under 20 rows get nothing
    assert cluster_quotas(np.array([100, 10, 10]), 6).tolist() == [4, 1, 1]
    assert cluster_quotas(np.array([100, 10, 10]), 2).tolist() == [2, 0, 0]  # fewer picks than clusters
    assert cluster_quotas(np.array([1, 1, 1]), 10).tolist() == [1, 1, 1]


@pytest.mark.parametrize("seed", range(5))
def test_cluster_quotas_sum_to_the_budget_within_sizes(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, size=rng.integers(1, 12))
    for budget in range(0, int(sizes.sum()) + 3):
        quotas = cluster_quotas(sizes, budget)
        assert quotas.sum() == min(budget, sizes.sum()) and (quotas <= sizes).all()
        if budget >= len(sizes):
            assert (quotas >= 1).all()


def random_clusters(seed, n=60, d=6, k=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n) * 7 + 3  # arbitrary ids, not 0..k-1
    labels[0] = 1000  # a cluster of one
    return rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("nonnegative", [True, False])
@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_tagcos_returns_exactly_the_budget(nonnegative, ridge):
    features, labels = random_clusters(0)
    for budget in (0, 1, 3, 6, 17, 59, 60, 100):
        chosen, filled = tagcos_select(features, labels, budget, ridge=ridge, nonnegative=nonnegative)
        assert len(chosen) == min(budget, 60) == len(set(chosen.tolist()))
        assert 0 <= filled <= len(chosen) and ((0 <= chosen) & (chosen < 60)).all()
        again, _ = tagcos_select(features, labels, budget, ridge=ridge, nonnegative=nonnegative)
        assert chosen.tolist() == again.tolist()
        if budget >= 6:  # every cluster, the cluster of one included, gets a pick
            assert 0 in chosen.tolist() and set(labels[chosen].tolist()) == set(labels.tolist())


def test_tagcos_terminates_on_adversarial_clusters():
    e = np.eye(4)
    features = np.vstack([
        e[0], -e[0],  # cluster 0: mean 0, OMP finds nothing (TAGCOS's endless loop)
        e[1], -e[1], np.zeros(4),  # cluster 1: the same with a zero row
        np.zeros(4),  # cluster 2: a single zero row
        e[2], e[2], e[2],  # cluster 3: duplicates
        e[3],  # cluster 4: one row
    ])
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3, 4])
    for ridge in (0.0, 1.0):
        for budget in (5, 8, 10, 25):
            chosen, filled = tagcos_select(features, labels, budget, ridge=ridge)
            assert len(chosen) == min(budget, 10) == len(set(chosen.tolist()))
    chosen, filled = tagcos_select(features, labels, 10, ridge=0.0)
    # the duplicates (one OMP round each) and the single e3 row are OMP picks; the rest is filled
    assert filled == 6 and chosen.tolist() == list(range(10))


def test_tagcos_in_one_cluster_is_omp_towards_the_mean():
    rng = np.random.default_rng(4)
    features = np.abs(rng.normal(size=(40, 30)))
    picks, _ = omp(features, features.mean(axis=0), 6, ridge=1.0)
    assert len(picks) == 6
    chosen, filled = tagcos_select(features, np.zeros(40, dtype=int), 6, ridge=1.0)
    assert chosen.tolist() == picks.tolist() and filled == 0


def test_tagcos_rejects_bad_input():
    with pytest.raises(ValueError, match="one per row"):
        tagcos_select(np.eye(3), [0, 1], 2)
    with pytest.raises(ValueError, match="budget=-1"):
        tagcos_select(np.eye(3), [0, 1, 1], -1)


# --- LESS ----------------------------------------------------------------------------------

def test_less_scores_equal_the_explicit_loops():
    rng = np.random.default_rng(5)
    n, m, dims = 13, 7, (6, 6, 9)
    train = [rng.normal(size=(n, d)).astype(np.float32) for d in dims]
    targets = [rng.normal(size=(m, d)) for d in dims]
    train[1][4] = 0  # a zero gradient: cosine 0
    lr = np.array([1.6877e-05, 1.2859e-05, 7.7030e-06])  # LESS README's checkpoint weights
    subtask = np.array(["b", "a", "b", "c", "a", "b", "c"])
    weights = lr / lr.sum()

    def cos(u, v):
        norm = np.linalg.norm(u) * np.linalg.norm(v)
        return float(u.astype(np.float64) @ v) / norm if norm else 0.0

    expected = []
    for i in range(n):
        per_subtask = []
        for s in sorted(set(subtask)):
            members = [j for j in range(m) if subtask[j] == s]
            per_subtask.append(np.mean([sum(w * cos(x[i], t[j]) for w, x, t in zip(weights, train, targets))
                                        for j in members]))
        expected.append(max(per_subtask))
    np.testing.assert_allclose(less_scores(train, targets, lr, subtask), expected, atol=1e-6)


def test_less_scores_match_matching_py_on_contiguous_subtasks():
    """LESS's matching.py: Σ_i w_i x_i y_iᵀ on unit rows, reshape(N, n_sub, -1).mean(-1).max(-1)."""
    rng = np.random.default_rng(6)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    train = [unit(rng.normal(size=(2100, 16))) for _ in range(2)]  # more rows than one chunk
    targets = [unit(rng.normal(size=(12, 16))) for _ in range(2)]
    lr = np.array([0.25, 0.75])
    code = sum(w * x @ t.T for w, x, t in zip(lr, train, targets)).reshape(2100, 4, -1).mean(-1).max(-1)
    np.testing.assert_allclose(less_scores(train, targets, lr, np.repeat(np.arange(4), 3)), code, atol=1e-12)


def test_less_scores_reject_mismatched_checkpoints():
    with pytest.raises(ValueError, match="per checkpoint"):
        less_scores([np.eye(3)], [np.eye(3), np.eye(3)], [1.0], [0, 0, 0])
    with pytest.raises(ValueError, match="one label per target row"):
        less_scores([np.eye(3)], [np.eye(3)], [1.0], [0, 0])


# --- RDS+ pooling --------------------------------------------------------------------------

def test_position_weighted_mean_equals_the_hand_written_sum():
    rng = np.random.default_rng(7)
    hidden = rng.normal(size=(4, 6, 5))
    mask = np.array([[1, 1, 1, 1, 1, 1],   # no padding: the code's t / Σt over all positions
                     [1, 1, 1, 0, 0, 0],   # right padding
                     [0, 0, 1, 1, 1, 1],   # left padding
                     [0, 0, 0, 0, 0, 1]])  # one token
    expected = []
    for row, keep in zip(hidden, mask):
        real = row[keep == 1]
        positions = np.arange(1, len(real) + 1)
        expected.append(sum(p * h for p, h in zip(positions, real)) / positions.sum())
    pooled = position_weighted_mean(hidden, mask)
    np.testing.assert_allclose(pooled, expected, rtol=1e-12)
    np.testing.assert_allclose(pooled[1], position_weighted_mean(hidden[1:2, :3], np.ones((1, 3)))[0])


def test_position_weighted_mean_is_at_least_float32_and_rejects_empty_rows():
    hidden = np.ones((2, 3, 4), dtype=np.float16)
    assert position_weighted_mean(hidden, np.ones((2, 3))).dtype == np.float32
    with pytest.raises(ValueError, match=r"rows \[1\] have no real token"):
        position_weighted_mean(hidden, np.array([[1, 1, 0], [0, 0, 0]]))


# --- RDS+ round-robin ----------------------------------------------------------------------

def reference_round_robin(similarity, budget, order, skip_taken):
    """The plain loop: full stable sorts; `skip_taken=False` is get_top_influences.py's
    pop-and-forfeit, finished pass then truncated."""
    n = len(similarity)
    ranked = {q: list(np.argsort(-similarity[:, q], kind="stable")) for q in order}
    chosen, taken = [], set()
    while len(chosen) < min(budget, n):
        for q in order:
            while skip_taken and ranked[q] and ranked[q][0] in taken:
                ranked[q].pop(0)
            if not ranked[q]:
                continue
            x = int(ranked[q].pop(0))
            if x not in taken:
                chosen.append(x)
                taken.add(x)
    return chosen[:min(budget, n)]


@pytest.mark.parametrize("skip_taken", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_round_robin_matches_the_reference_loop(skip_taken, ties, seed):
    rng = np.random.default_rng(seed)
    n, m = 300, int(rng.integers(1, 6))
    similarity = rng.integers(0, 3, size=(n, m)).astype(float) if ties else rng.normal(size=(n, m))
    if not ties:
        similarity[:, 1:] = similarity[:, :1] + 0.1 * similarity[:, 1:]  # targets agree: many duplicates
    order = rng.permutation(m)
    for budget in (0, 1, 7, 120, 299, 300, 500):
        chosen = round_robin(similarity, budget, order, skip_taken=skip_taken)
        assert chosen.tolist() == reference_round_robin(similarity, budget, order, skip_taken)


def test_round_robin_duplicate_handling_differs_as_documented():
    similarity = np.array([[0.9, 0.8], [0.5, 0.7], [0.1, 0.2]])  # both targets like candidate 0 best
    assert round_robin(similarity, 2).tolist() == [0, 1]  # target 1 goes on to its next best
    assert round_robin(similarity, 2, skip_taken=False).tolist() == [0, 1]  # ... or forfeits, then pass 2
    assert round_robin(similarity, 2, np.array([1, 0]), skip_taken=False).tolist() == [0, 1]
    forfeits = np.array([[0.9, 0.9, 0.1], [0.8, 0.1, 0.9], [0.1, 0.8, 0.8]])
    assert round_robin(forfeits, 3).tolist() == [0, 2, 1]
    assert round_robin(forfeits, 3, skip_taken=False).tolist() == [0, 1, 2]


def test_round_robin_budget_at_least_n_returns_everything():
    similarity = np.random.default_rng(8).normal(size=(25, 3))
    for skip_taken in (True, False):
        assert sorted(round_robin(similarity, 40, skip_taken=skip_taken).tolist()) == list(range(25))


def test_round_robin_rejects_bad_input():
    with pytest.raises(ValueError, match="permutation"):
        round_robin(np.zeros((3, 2)), 1, np.array([0, 0]))
    with pytest.raises(ValueError, match="no target column"):
        round_robin(np.zeros((3, 0)), 1)


# --- DiverseEvol k-center (sftpick's existing kcenter_greedy) ------------------------------

def diverse_evol_kcenter(x, labeled, n_query):
    """KCenterSampling.query in O(n·k): Euclidean, the labeled set as the first centers, each
    pick the unlabeled row farthest from its nearest center (ties: lower pool index)."""
    x = x.astype(np.float64)
    nearest = np.min(np.linalg.norm(x[:, None] - x[None, labeled], axis=2), axis=1)
    nearest[labeled] = -np.inf
    picks = []
    for _ in range(n_query):
        pick = int(np.argmax(nearest))
        picks.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[pick], axis=1))
        nearest[pick] = -np.inf
    return picks


@pytest.mark.parametrize("seed", range(3))
def test_kcenter_from_given_centers_is_diverse_evol_k_center(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 16)).astype(np.float32)
    labeled = rng.choice(400, size=20, replace=False)
    chosen, _ = kcenter_greedy(x, 30, x[labeled])
    assert chosen.tolist() == diverse_evol_kcenter(x, labeled, 30)
