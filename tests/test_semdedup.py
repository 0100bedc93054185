"""SemDeDup (`--dedup semantic`) on real all-MiniLM-L6-v2 vectors of the bundled sample, against
the authors' own formulation (facebookresearch/SemDeDup, commit 6b41945) recomputed in numpy."""
import json
from pathlib import Path

import numpy as np
import pytest

import sftpick
from sftpick.curation import semdedup as semdedup_module
from sftpick.curation.semdedup import DEFAULT_CLUSTERS, DEFAULT_EPS, KEEP, semdedup
from sftpick.errors import DataError, OptionError

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"
VECTORS = np.load(Path(__file__).parent / "fixtures" / "sample_alpaca_minilm.npy", allow_pickle=False)  # 120 × 384


def whole_text(record: dict) -> str:
    """What the fixture embeds: instruction, input and response joined by newlines."""
    return "\n".join(part for part in (record["instruction"], record["input"], record["output"]) if part)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def authors_order(items: np.ndarray, sim_to_centroid: np.ndarray, keep: str) -> list[int]:
    """sort_clusters.py `rank_within_cluster` (spherical, cosine, keep_hard=True), then
    semdedup.py's `which_to_keep`: `easy` reverses the list."""
    ranked = sorted(zip(items.tolist(), (np.float32(1) - sim_to_centroid[items]).tolist()), key=lambda t: t[1],
                    reverse=True)
    order = [item for item, _ in ranked]
    return order[::-1] if keep == "easy" else order


def authors_removed(x: np.ndarray, labels: np.ndarray, sim_to_centroid: np.ndarray, eps: float,
                    keep: str) -> np.ndarray:
    """semdedup.py `SemDeDupJob.semdedup`, per cluster: the triu max of the ordered pairwise
    similarities with a zeroed diagonal, removed where M > 1 - eps."""
    removed = np.zeros(len(x), dtype=bool)
    for cluster in np.unique(labels):
        order = authors_order(np.flatnonzero(labels == cluster), sim_to_centroid, keep)
        reps = x[order]
        sims = reps @ reps.T
        np.fill_diagonal(sims, 0.0)
        removed[order] = np.triu(sims, k=1).max(axis=0) > 1 - eps
    return removed


def expected_twins(x: np.ndarray, labels: np.ndarray, order_of: dict, removed: np.ndarray, eps: float) -> np.ndarray:
    """The twin rule, one record at a time: the most similar kept record of the cluster above
    1 - eps, else (a chain) the twin of the earlier record it matched best."""
    twins = np.full(len(x), -1)
    for cluster in np.unique(labels):
        order = order_of[cluster]
        for position, j in enumerate(order):
            if not removed[j]:
                continue
            kept = [i for i in order if not removed[i]]
            sims = [float(x[i] @ x[j]) for i in kept]
            if max(sims) > np.float32(1 - eps):
                twins[j] = kept[int(np.argmax(sims))]
            else:
                earlier = order[:position]
                twins[j] = twins[earlier[int(np.argmax([x[i] @ x[j] for i in earlier]))]]
    return twins


@pytest.fixture(scope="module")
def planted():
    """The 120 real records plus a lightly edited copy of record 5 (row 120) and a paraphrase of
    record 9 (row 121), all embedded here with the real all-MiniLM-L6-v2."""
    from sftpick.embeddings import embed_texts

    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    edited = dict(records[5], instruction="Give some tips for managing your time effectively.",
                  output=records[5]["output"].replace("Set a plan", "Make a plan").replace("relaxation", "rest"))
    paraphrase = {"instruction": "Describe what a ride in a hot air balloon is like.", "input": "",
                  "output": "Riding in a hot air balloon lets you see the landscape from a whole new angle. You "
                            "climb slowly into the sky in a wicker basket beneath a bright balloon and float quietly "
                            "over fields, forests and rivers, watching for animals far below. After landing, many "
                            "tours celebrate with a glass of champagne."}
    vectors = embed_texts([whole_text(r) for r in records + [edited, paraphrase]], model="all-minilm-l6-v2",
                          device="cpu")
    assert np.allclose(vectors[:120], VECTORS, atol=1e-5)  # the fixture is these records' vectors
    return vectors


def pair_decision(result: np.ndarray, a: int, b: int) -> set[int]:
    return {int(result[a]), int(result[b])}


def test_lightly_edited_copy_is_dropped_at_the_default_eps_and_names_its_original(planted):
    similarity = float(planted[5] @ planted[120])
    assert similarity > 1 - DEFAULT_EPS
    result = semdedup(planted)
    assert pair_decision(result, 5, 120) in ({-1, 5}, {-1, 120})  # one kept, the other names it
    assert (result[5] == 120) != (result[120] == 5)
    assert np.flatnonzero(result >= 0).tolist() in ([5], [120])  # nothing else, the paraphrase included
    kept_both = semdedup(planted, eps=(1 - similarity) / 2)
    assert kept_both[5] == kept_both[120] == -1


def test_paraphrase_is_dropped_once_eps_reaches_its_similarity(planted):
    similarity = float(planted[9] @ planted[121])
    assert 0.7 < similarity < 1 - DEFAULT_EPS  # a paraphrase, not a copy
    for keep in KEEP:
        dropped = semdedup(planted, eps=1 - similarity + 0.01, keep=keep)
        assert pair_decision(dropped, 9, 121) in ({-1, 9}, {-1, 121}), keep
        kept = semdedup(planted, eps=1 - similarity - 0.01, keep=keep)
        assert kept[9] == kept[121] == -1, keep


@pytest.mark.parametrize("n_clusters", [None, 1, 3, 10])
def test_unrelated_real_records_are_kept_at_the_default_eps(n_clusters):
    assert (semdedup(VECTORS, n_clusters=n_clusters) == -1).all()


@pytest.mark.parametrize("keep", ["hard", "easy"])
@pytest.mark.parametrize("n_clusters", [1, 3, 7])
@pytest.mark.parametrize("eps", [0.25, 0.3, 0.4, 0.5, 0.6])
def test_matches_the_authors_triu_max_on_real_vectors(eps, n_clusters, keep):
    x = unit(VECTORS)
    labels, sim_to_centroid = semdedup_module._spherical_kmeans(x, n_clusters, 0)
    removed = authors_removed(x, labels, sim_to_centroid, eps, keep)
    result = semdedup(VECTORS, eps=eps, n_clusters=n_clusters, keep=keep)
    np.testing.assert_array_equal(result >= 0, removed)
    order_of = {c: authors_order(np.flatnonzero(labels == c), sim_to_centroid, keep) for c in np.unique(labels)}
    np.testing.assert_array_equal(result, expected_twins(x, labels, order_of, removed, eps))
    if eps >= 0.4:
        assert removed.any()  # the comparison is not vacuous


def near_copies(seed: int = 0, groups: int = 60, copies: int = 5, noise: float = 0.15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bases = rng.standard_normal((groups, 384))
    return (np.repeat(bases, copies, axis=0) + noise * rng.standard_normal((groups * copies, 384))).astype(np.float32)


@pytest.mark.parametrize("keep", ["hard", "easy"])
def test_blocks_of_a_large_cluster_give_the_unblocked_result(monkeypatch, keep):
    x = near_copies()
    whole = semdedup(x, eps=0.1, n_clusters=2, keep=keep)
    labels, sim_to_centroid = semdedup_module._spherical_kmeans(unit(x), 2, 0)
    np.testing.assert_array_equal(whole >= 0, authors_removed(unit(x), labels, sim_to_centroid, 0.1, keep))
    assert 200 <= (whole >= 0).sum() < 240  # most copies found; k-means splits a few groups
    monkeypatch.setattr(semdedup_module, "_BLOCK", 1_000)  # a few rows per block
    np.testing.assert_array_equal(semdedup(x, eps=0.1, n_clusters=2, keep=keep), whole)


@pytest.mark.parametrize("keep", KEEP)
def test_twins_are_kept_records_of_the_same_cluster(keep):
    x = near_copies(seed=1)
    result = semdedup(x, eps=0.1, n_clusters=4, keep=keep, seed=3)
    labels, _ = semdedup_module._spherical_kmeans(unit(x), 4, 3)
    dropped = np.flatnonzero(result >= 0)
    assert len(dropped) and (result[result[dropped]] == -1).all()
    assert (labels[result[dropped]] == labels[dropped]).all()


@pytest.mark.parametrize("keep", KEEP)
def test_same_seed_same_result(keep):
    x = near_copies(seed=2)
    first = semdedup(x, eps=0.1, n_clusters=5, keep=keep, seed=7)
    np.testing.assert_array_equal(semdedup(x, eps=0.1, n_clusters=5, keep=keep, seed=7), first)
    assert first.dtype == np.int64


def test_a_chain_drops_as_the_authors_do_and_names_a_kept_twin():
    """a ≈ b ≈ c but a ≉ c at eps 0.1: the authors drop both records after the first of the
    chain; the last one's twin is reached through the middle one."""
    theta = np.arccos(0.95)
    x = np.array([[1, 0, 0], [np.cos(theta), np.sin(theta), 0], [np.cos(2 * theta), np.sin(2 * theta), 0],
                  [0, -1, 0]], dtype=np.float32)  # a, b, c, and one unrelated record below a
    assert semdedup(x, eps=0.1, n_clusters=1, keep="hard").tolist() == [2, 2, -1, -1]  # farthest first: c
    assert semdedup(x, eps=0.1, n_clusters=1, keep="easy").tolist() == [-1, 0, 0, -1]  # nearest first: a


def test_identical_vectors_keep_the_first_in_file_order():
    x = np.repeat(VECTORS[:1], 5, axis=0)
    for keep in ("hard", "easy"):
        assert semdedup(x, n_clusters=3, keep=keep).tolist() == [-1, 0, 0, 0, 0]
    random = semdedup(x, keep="random")
    assert (random == -1).sum() == 1 and set(random[random >= 0]) == set(np.flatnonzero(random == -1))


def test_small_and_degenerate_inputs():
    assert semdedup(np.zeros((0, 384), dtype=np.float32)).tolist() == []
    assert semdedup(np.zeros((0, 384), dtype=np.float32)).dtype == np.int64
    assert semdedup(VECTORS[:1]).tolist() == [-1]
    np.testing.assert_array_equal(semdedup(VECTORS[:10], eps=0.5, n_clusters=50),
                                  semdedup(VECTORS[:10], eps=0.5, n_clusters=10))
    with_zero = np.vstack([VECTORS[:5], np.zeros((1, 384), dtype=np.float32)])
    assert (semdedup(with_zero, eps=0.5, n_clusters=1) == -1).all()  # a zero row matches nothing


def test_float16_vectors_are_read_as_their_float32_values():
    half = VECTORS.astype(np.float16)
    np.testing.assert_array_equal(semdedup(half, eps=0.4, n_clusters=3),
                                  semdedup(half.astype(np.float32), eps=0.4, n_clusters=3))


def test_default_clusters_keep_the_authors_records_per_cluster():
    assert [DEFAULT_CLUSTERS(n) for n in (0, 1, 120, 8_800, 8_801, 52_002)] == [0, 1, 1, 1, 2, 6]
    assert DEFAULT_CLUSTERS(440_000_000) == 50_000  # LAION-440M in the authors' 50,000 clusters


@pytest.mark.parametrize("kwargs, error, match", [
    ({"eps": 0}, OptionError, r"eps=0 should be in \(0, 1\]"),
    ({"eps": 1.5}, OptionError, r"eps=1.5 should be in \(0, 1\]"),
    ({"keep": "medium"}, OptionError, "keep='medium' is not one of hard, easy, random"),
    ({"n_clusters": 0}, OptionError, "n_clusters=0 should be >= 1"),
])
def test_bad_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        semdedup(VECTORS, **kwargs)


@pytest.mark.parametrize("vectors, match", [
    (VECTORS[0], r"float32 or float16 \[n, d\] array, got float32 \(384,\)"),
    (VECTORS.astype(np.float64), "got float64"),
    (np.where(np.arange(384) == 3, np.nan, VECTORS).astype(np.float32), "NaN or infinite"),
])
def test_bad_vectors_are_named(vectors, match):
    with pytest.raises(DataError, match=match):
        semdedup(vectors)
