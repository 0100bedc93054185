"""The diversity selectors against brute force on small sets, plus property tests."""
import itertools

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpick.selectors import SELECTORS, make_selector
from sftpick.selectors import deita as deita_module
from sftpick.selectors import facility as facility_module
from sftpick.selectors import kcenter as kcenter_module
from sftpick.selectors.clusters import equal_quotas, proportional_quotas, take_by_quota
from sftpick.selectors.deita import deita_filter
from sftpick.selectors.facility import knn_graph, lazy_greedy
from sftpick.selectors.kcenter import kcenter_greedy
from sftpick.selectors.ranking import score_order

DIVERSE = ["kcenter", "facility", "clusters", "deita"]  # the coverage strategies (test_diversity_beats_topk…)


def unit_vectors(n, dim=8, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def score_table(n, seed=0):
    scores = np.random.default_rng(seed + 1).uniform(size=n)
    return pa.table({"row": np.arange(n) * 3 + 7, "id": [f"r{i}" for i in range(n)], "ifd": scores})


# --- k-center ------------------------------------------------------------------------------

def brute_kcenter(x, budget, first, seeds=None):
    dist = lambda a, b: np.linalg.norm(a[:, None].astype(np.float64) - b[None], axis=2)  # noqa: E731
    mind = dist(x, seeds).min(axis=1) if seeds is not None else np.full(len(x), np.inf)
    chosen = []
    for _ in range(budget):
        pick = first if seeds is None and not chosen else int(np.argmax(mind))
        chosen.append(pick)
        mind = np.minimum(mind, dist(x, x[pick:pick + 1])[:, 0])
    return chosen, mind.max()


@pytest.mark.parametrize("n, dim, budget", [(50, 3, 5), (300, 8, 40), (400, 32, 120)])
@pytest.mark.parametrize("with_seeds", [False, True])
@pytest.mark.parametrize("candidates", [8192, 16, 1])  # all rows tracked, or few and refreshed often
def test_kcenter_matches_brute_force(n, dim, budget, with_seeds, candidates, monkeypatch):
    monkeypatch.setattr(kcenter_module, "_CANDIDATES", candidates)
    monkeypatch.setattr(kcenter_module, "_CHUNK", 64)
    x = unit_vectors(n, dim)
    seeds = unit_vectors(4, dim, seed=9) if with_seeds else None
    chosen, radius = kcenter_greedy(x, budget, seeds, first=3)
    expected, expected_radius = brute_kcenter(x, budget, 3, seeds)
    assert chosen.tolist() == expected
    assert radius == pytest.approx(expected_radius, abs=1e-5)


def test_kcenter_radius_within_twice_the_optimum():
    x = unit_vectors(10, 2, seed=4)
    _, radius = kcenter_greedy(x, 3, first=0)
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    optimum = min(full[:, list(c)].min(axis=1).max() for c in itertools.combinations(range(10), 3))
    assert optimum <= radius <= 2 * optimum + 1e-6


def test_kcenter_starts_at_best_score_and_stops_at_duplicates():
    x = np.repeat(unit_vectors(3, 4), 4, axis=0)  # 3 distinct points, 4 copies each
    table = score_table(12)
    selector = make_selector("kcenter", by="ifd")
    chosen = selector.select(table, 5, x)
    assert chosen[0] == score_order(table, "ifd", False)[0]
    assert len(chosen) == 3 and len({tuple(v) for v in x[chosen]}) == 3
    assert selector.stats_["covering_radius"] == 0
    assert "selected 3 of 5" in selector.notes_[0]


def test_kcenter_seed_centers_are_not_picked_again():
    x = unit_vectors(40, 6)
    selector = make_selector("kcenter", centers=x[:5])
    chosen = selector.select(score_table(40), 10, x)
    assert not set(chosen.tolist()) & set(range(5))
    assert selector.stats_["seed_centers"] == 5


# --- facility location ---------------------------------------------------------------------

def brute_greedy(weights, budget):
    """Plain greedy on a dense matrix: each step evaluates f(S + j) for every j."""
    covered, chosen = np.zeros(len(weights)), []
    for _ in range(budget):
        values = np.maximum(weights, covered[:, None]).sum(axis=0)
        values[chosen] = -np.inf
        pick = int(np.argmax(values))
        chosen.append(pick)
        covered = np.maximum(covered, weights[:, pick])
    return chosen, covered.sum()


def test_knn_graph_with_all_neighbours_is_the_dense_similarity():
    x = unit_vectors(60, 5)
    dense = np.maximum(x @ x.T, 0)
    np.fill_diagonal(dense, 1)
    np.testing.assert_allclose(knn_graph(x, 59).toarray(), dense, atol=1e-6)


@pytest.mark.parametrize("neighbors", [1, 3, 10, 199])
def test_lazy_greedy_matches_plain_greedy(neighbors):
    graph = knn_graph(unit_vectors(200, 6), neighbors)
    chosen, value = lazy_greedy(graph, 25)
    expected, expected_value = brute_greedy(graph.toarray(), 25)
    assert chosen.tolist() == expected
    assert value == pytest.approx(expected_value, rel=1e-12)


def test_knn_graph_keeps_k_neighbours_and_itself():
    graph = knn_graph(unit_vectors(100, 6), 4).tocsr()
    assert (np.diff(graph.indptr) <= 5).all()
    assert np.all(graph.diagonal() == 1)


def test_facility_greedy_reaches_its_guarantee():
    weights = knn_graph(unit_vectors(12, 3, seed=2), 4).toarray()
    _, value = lazy_greedy(knn_graph(unit_vectors(12, 3, seed=2), 4), 3)
    optimum = max(weights[:, list(c)].max(axis=1).sum() for c in itertools.combinations(range(12), 3))
    assert (1 - 1 / np.e) * optimum <= value <= optimum + 1e-9


def test_facility_ivf_graph_is_close_to_exact_and_deterministic(monkeypatch):
    x = unit_vectors(3000, 16, seed=5)
    exact = knn_graph(x, 10)
    monkeypatch.setattr(facility_module, "EXACT_UP_TO", 100)
    approx = knn_graph(x, 10, seed=1)
    recall = exact.multiply(approx).count_nonzero() / exact.count_nonzero()
    assert recall > 0.8
    assert (approx != knn_graph(x, 10, seed=1)).nnz == 0


# --- DEITA ---------------------------------------------------------------------------------

def one_at_a_time(x, order, budget, tau):
    kept = []
    for i in order:
        if len(kept) == budget:
            break
        if all(float(x[i] @ x[j]) < tau for j in kept):
            kept.append(int(i))
    return kept


@pytest.mark.parametrize("block", [1, 7, 1024])
@pytest.mark.parametrize("tau, budget", [(0.9, 50), (0.5, 300), (0.2, 40)])
def test_deita_matches_the_one_at_a_time_walk(monkeypatch, block, tau, budget):
    monkeypatch.setattr(deita_module, "_BLOCK", block)
    x = unit_vectors(300, 4)
    order = np.random.default_rng(3).permutation(300)
    chosen, examined = deita_filter(x, order, budget, tau)
    expected = one_at_a_time(x, order, budget, tau)
    assert chosen.tolist() == expected
    stop = order.tolist().index(expected[-1]) + 1 if len(expected) == budget else 300
    assert examined == stop


def test_deita_says_when_tau_exhausts_the_pool():
    x = np.repeat(unit_vectors(4, 5), 5, axis=0)
    selector = make_selector("deita", tau=0.9)
    chosen = selector.select(score_table(20), 10, x)
    assert len(chosen) == 4
    assert "selected 4 of 10" in selector.notes_[0] and selector.stats_["too_similar"] == 16


@pytest.mark.parametrize("tau", [1.5, -2])
def test_deita_rejects_a_tau_outside_cosine_range(tau):
    with pytest.raises(ValueError, match=r"tau=.* should be a cosine similarity in \[-1, 1\]"):
        make_selector("deita", tau=tau).select(score_table(5), 2, unit_vectors(5))


# --- clusters ------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, budget, expected", [
    ([50, 30, 20], 10, [5, 3, 2]),
    ([5, 5, 5], 4, [2, 1, 1]),
    ([97, 2, 1], 10, [10, 0, 0]),
])
def test_proportional_quotas(sizes, budget, expected):
    assert proportional_quotas(np.array(sizes), budget).tolist() == expected


@pytest.mark.parametrize("sizes, budget, expected", [
    ([50, 30, 20], 9, [3, 3, 3]),
    ([50, 2, 20], 30, [14, 2, 14]),
    ([50, 2, 20], 31, [15, 2, 14]),
    ([4, 4, 4], 12, [4, 4, 4]),
])
def test_equal_quotas(sizes, budget, expected):
    assert equal_quotas(np.array(sizes), budget).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12).filter(lambda s: sum(s) > 0), st.data())
def test_quotas_fill_the_budget_within_cluster_sizes(sizes, data):
    sizes = np.array(sizes)
    budget = data.draw(st.integers(0, int(sizes.sum())))
    for quotas in (proportional_quotas(sizes, budget), equal_quotas(sizes, budget)):
        assert quotas.sum() == budget and (quotas >= 0).all() and (quotas <= sizes).all()


def test_take_by_quota_takes_the_best_of_each_cluster():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 100)
    order = rng.permutation(100)
    quotas = np.array([3, 0, 7, 1, 2])
    chosen = take_by_quota(order, labels, quotas)
    for cluster in range(5):
        in_order = [p for p in order if labels[p] == cluster]
        assert [p for p in chosen if labels[p] == cluster] == in_order[:quotas[cluster]]


def test_clusters_rejects_more_clusters_than_records():
    with pytest.raises(ValueError, match="clusters=100 should be between 1 and the 20 records"):
        make_selector("clusters", clusters=100).select(score_table(20), 5, unit_vectors(20))


@pytest.mark.parametrize(("n", "expected"), [(5, 1), (60, 6), (999, 99), (5000, 100)])
def test_clusters_default_follows_the_pool(n, expected):
    selector = make_selector("clusters")
    selector.select(score_table(n), min(n, 5), unit_vectors(n))
    assert selector.stats_["clusters"] == expected


def test_clusters_rejects_an_unknown_quota():
    with pytest.raises(ValueError, match="quota='fair' is not one of proportional, equal"):
        make_selector("clusters", quota="fair", clusters=2).select(score_table(20), 5, unit_vectors(20))


# --- all diversity selectors ---------------------------------------------------------------

def test_score_order_puts_nan_last_and_breaks_ties_by_row():
    table = pa.table({"row": [5, 1, 3, 2], "ifd": [0.5, float("nan"), 0.9, 0.5]})
    assert score_order(table, "ifd", False).tolist() == [2, 3, 0, 1]
    assert score_order(table, "ifd", True).tolist() == [3, 0, 2, 1]


OPTIONS = {"kcenter": {}, "facility": {"neighbors": 5}, "clusters": {"clusters": 4}, "deita": {"tau": 0.95}}


@pytest.mark.parametrize("name", ["clusters", "facility"])
def test_seeded_selectors_change_with_the_seed_only(name, monkeypatch):
    monkeypatch.setattr(facility_module, "EXACT_UP_TO", 100)  # the IVF graph is the seeded part
    x, table = unit_vectors(2000, 8, seed=1), score_table(2000)
    options = {"clusters": {"clusters": 20}, "facility": {"neighbors": 5}}[name]
    runs = [make_selector(name, seed=s, **options).select(table, 100, x).tolist() for s in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("name", sorted(n for n, cls in SELECTORS.items() if cls.needs_embeddings))
def test_diverse_selectors_need_embeddings_of_matching_shape(name):
    with pytest.raises(ValueError, match="needs sentence embeddings"):
        make_selector(name).select(score_table(5), 2, None)
    with pytest.raises(ValueError, match=r"do not match the 5 rows"):
        make_selector(name).select(score_table(5), 2, unit_vectors(4))


def test_diversity_beats_topk_on_coverage():
    """Near-duplicate clusters: top-k takes one cluster's copies, k-center one of each."""
    centers = unit_vectors(10, 16, seed=7)
    x = np.repeat(centers, 20, axis=0) + np.random.default_rng(0).normal(scale=0.01, size=(200, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    table = pa.table({"row": np.arange(200), "ifd": np.repeat(np.linspace(1, 0, 10), 20) + np.arange(200) * 1e-5})
    for name in DIVERSE:
        options = {**OPTIONS[name], **({"clusters": 10} if name == "clusters" else {})}
        chosen = make_selector(name, **options).select(table, 10, x)
        assert len(set(chosen // 20)) == 10, name
    assert len(set(make_selector("topk").select(table, 10).tolist() // np.int64(20))) < 10


def test_deita_normalises_vectors_that_are_not_unit():
    x, table = unit_vectors(60, 5), score_table(60)
    scaled = x * np.random.default_rng(0).uniform(0.5, 3, size=(60, 1)).astype(np.float32)
    unit = make_selector("deita", tau=0.6).select(table, 30, x)
    assert make_selector("deita", tau=0.6).select(table, 30, scaled).tolist() == unit.tolist()
