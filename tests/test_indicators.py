"""Instruction Mining indicators on real records: len, mtld (hand-worked), knn_k (against
brute force), reward (a tiny real BERT reward model built here), and the api aliases."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import sftpick
from sftpick.api import build_scorers
from sftpick.embeddings import embed_examples, embeddings_path, load_embeddings
from sftpick.io import read_dataset
from sftpick.scorers.knn import KnnScorer, exact_neighbours, kth_neighbour_distance, recall_at_k
from sftpick.scorers.length import LengthScorer
from sftpick.scorers.mtld import mtld, mtld_pass
from sftpick.scorers.reward import RewardScorer
from tiny_reward import build_tiny_reward_model

FIXTURE = Path(__file__).parent / "fixtures" / "indicators_alpaca.json"  # see indicators_alpaca.LICENSE.md


@pytest.fixture(scope="module")
def examples():
    return read_dataset(FIXTURE).examples


# ---------------------------------------------------------------- MTLD, worked by hand
@pytest.mark.parametrize("text, expected", [
    # a(1/1) b(2/2) a(2/3=.67 <= .72: factor 1) b a b(2/3: factor 2); 6 words / 2 factors, both ways
    ("a b a b a b", 3.0),
    # a, a(1/2=.5: factor) twice; punctuation and case do not make new words
    ("A, a! A? a.", 2.0),
    # forward: the cat sat on the mat the(5/7=.714: factor 1) end -> remainder TTR 1, adds 0: 8/1 = 8
    # backward: end the mat the on sat cat the -> never <= .72, TTR 6/8 = .75,
    #   partial factor (1-.75)/(1-.72) = .892857: 8/.892857 = 8.96; mean = 8.48
    ("the cat sat on the mat the end", (8.0 + 8 / (0.25 / 0.28)) / 2),
])
def test_mtld_matches_hand_worked_examples(text, expected):
    assert mtld(text) == pytest.approx(expected, rel=1e-12)


def test_mtld_one_pass_counts_the_partial_factor():
    # the dog the(2/3: factor) cat dog -> remainder TTR 1 -> 0; then 5 words / 1 factor
    assert mtld_pass("the dog the cat dog".split()) == pytest.approx(5.0)
    # a b c a: TTR 3/4 = .75 at the end, partial (0.25 / 0.28): 4 / 0.892857
    assert mtld_pass("a b c a".split()) == pytest.approx(4 / (0.25 / 0.28))


@pytest.mark.parametrize("text", ["", "every word differs here", "!!!"])
def test_mtld_is_nan_when_no_factor_exists(text):
    assert math.isnan(mtld(text))


# ---------------------------------------------------------------- len
def test_len_counts_response_tokens_and_characters(examples):
    scorer = LengthScorer()
    scorer.setup()
    assert not hasattr(scorer, "lm_")  # the tokenizer only, never the weights
    out = scorer.score(examples)
    ids = scorer.tokenizer_([e.response for e in examples], add_special_tokens=False)["input_ids"]
    assert [scorer.tokenizer_.decode(i) for i in ids] == [e.response for e in examples]  # nothing dropped
    np.testing.assert_array_equal(out["len"], [len(i) for i in ids])
    np.testing.assert_array_equal(out["len_chars"], [len(e.response) for e in examples])
    # golden: SmolLM2's tokenizer splits this sentence into 6 tokens
    assert len(scorer.tokenizer_("hello world, how are you", add_special_tokens=False)["input_ids"]) == 6
    assert scorer.config()["revision"].startswith("gguf-sha256:")


# ---------------------------------------------------------------- kNN
def _brute_force_kth(vectors: np.ndarray, k: int) -> np.ndarray:
    diff = vectors[:, None, :].astype(np.float64) - vectors[None, :, :]
    distances = np.sqrt((diff ** 2).sum(-1))
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, k - 1]


@pytest.mark.parametrize("k", [1, 6])
def test_exact_knn_matches_brute_force_with_duplicates(k):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 24)).astype(np.float32)
    vectors[10] = vectors[11]  # an exact duplicate: its distance to its twin is 0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    got, stats = kth_neighbour_distance(vectors, k, block=64)  # several query blocks
    np.testing.assert_allclose(got, _brute_force_kth(vectors, k), atol=2e-3)
    assert stats["index"] == "exact" and "recall_at_k" not in stats
    if k == 1:
        assert got[10] == pytest.approx(0.0, abs=2e-3)


@pytest.mark.parametrize("index", ["hnsw", "ivf"])
def test_approximate_knn_reports_recall_against_exact(index):
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(20, 16))
    vectors = (centers[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    got, stats = kth_neighbour_distance(vectors, 6, index=index)
    exact, _ = kth_neighbour_distance(vectors, 6)
    assert stats["recall_queries"] == 1000 and 0.8 <= stats["recall_at_k"] <= 1.0
    assert np.all(got >= exact - 1e-3)  # a missed neighbour can only make the k-th one farther
    assert np.mean(np.abs(got - exact) < 1e-3) >= 0.8


def test_recall_at_k_is_one_for_exact_ids_and_low_for_random_ids():
    vectors = np.random.default_rng(2).normal(size=(400, 8)).astype(np.float32)
    ids, _ = exact_neighbours(vectors, vectors, 7)
    assert recall_at_k(vectors, ids, 6, queries=100)["recall_at_k"] == pytest.approx(1.0)
    shuffled = np.random.default_rng(3).integers(0, 400, size=ids.shape)
    assert recall_at_k(vectors, shuffled, 6, queries=100)["recall_at_k"] < 0.2


def test_knn_scorer_on_real_records_matches_brute_force_and_saves_embeddings(tmp_path):
    data = tmp_path / "data.json"
    records = json.loads(FIXTURE.read_text())
    data.write_text(json.dumps(records + [records[3]]))  # row 30 duplicates row 3
    out = tmp_path / "scores.parquet"
    result = sftpick.score(data, out, scorers=["knn_6"], progress=False)
    knn = result.table.column("knn_6").to_numpy()
    unique = read_dataset(FIXTURE).examples
    expected = _brute_force_kth(embed_examples(unique), 6)
    np.testing.assert_allclose(knn[:30], expected, atol=2e-3)  # the duplicate is not its own neighbour
    assert knn[30] == knn[3]
    rows, vectors, meta = load_embeddings(embeddings_path(out))
    np.testing.assert_array_equal(rows, np.arange(31))
    np.testing.assert_allclose(vectors[30], vectors[3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert meta["model"] == "all-minilm-l6-v2" and meta["text"] == "whole"
    # second run: kNN from the cache (keyed by all the records), same values, file kept
    again = sftpick.score(data, out, scorers=["knn_6"], progress=False)
    assert again.timings["knn"]["from_cache"] == 31
    np.testing.assert_array_equal(again.table.column("knn_6").to_numpy(), knn)
    assert load_embeddings(embeddings_path(out))[2] == meta


def test_knn_scorer_refuses_too_few_records(tmp_path, examples):
    data = tmp_path / "five.json"
    data.write_text(json.dumps([e.record for e in examples[:5]]))
    with pytest.raises(ValueError, match="knn_6 needs more than 6 distinct records; got 5"):
        sftpick.score(data, scorers=["knn_6"], embed_text="instruction", progress=False)


@pytest.mark.parametrize("option, value, message", [
    ("knn_index", "lsh", "knn_index='lsh' is not one of exact, hnsw, ivf"),
    ("embed_text", "output", "embed_text='output' is not one of whole, instruction"),
    ("knn_k", 0, "knn_k=0 should be >= 1"),
    ("vectors_dtype", "int8", "vectors_dtype='int8' is not one of float32, float16"),
])
def test_knn_scorer_validates_options(option, value, message):
    with pytest.raises(ValueError, match=message):
        KnnScorer(**{option: value}).setup()


# ---------------------------------------------------------------- reward
def test_reward_matches_one_by_one_text_pair_scoring(tmp_path, examples):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = build_tiny_reward_model(tmp_path / "rm")
    scorer = RewardScorer(reward_model=str(folder), device="cpu", reward_batch_size=4)
    scorer.setup()
    got = scorer.score(examples)["reward"]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for example, value in zip(examples, got):
        context = "\n".join(p for p in (example.instruction, example.input) if p)
        encoded = tokenizer(context, example.response, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            assert value == pytest.approx(float(model(**encoded).logits[0, 0]), abs=1e-5)
    assert np.ptp(got) > 0 and scorer.config()["max_length"] == 128


def test_reward_needs_a_model_with_one_output(tmp_path):
    with pytest.raises(ValueError, match="needs a reward model: --reward-model"):
        RewardScorer().setup()
    folder = build_tiny_reward_model(tmp_path / "two", num_labels=2)
    with pytest.raises(ValueError, match="num_labels=2; expected 1"):
        RewardScorer(reward_model=str(folder)).setup()


# ---------------------------------------------------------------- names
def test_ppl_is_the_ifd_pass_and_knn_k_comes_from_the_name():
    scorers = build_scorers(["ifd", "ppl", "knn_10", "mtld"], {"knn_k": 3, "embed_text": "instruction"})
    assert [s.name for s in scorers] == ["ifd", "knn", "mtld"]  # one IFD model pass gives ifd and ppl_cond
    assert "ppl_cond" in scorers[0].columns
    assert scorers[1].columns == ("knn_10",) and scorers[1].embed_text == "instruction"
    with pytest.raises(ValueError, match="unknown scorer 'nope'; valid scorers: .*ppl, knn_K"):
        build_scorers(["nope"], {})


def test_run_saves_embeddings_that_the_diversity_selectors_reuse(tmp_path, monkeypatch):
    out = tmp_path / "out"
    scored, selection = sftpick.run(FIXTURE, out, 5, scorers=["len", "knn_6"], by="knn_6", progress=False)
    rows, vectors, meta = load_embeddings(out / "scores.embeddings.parquet")
    np.testing.assert_array_equal(rows, scored.table.column("row").to_numpy())
    knn = scored.table.column("knn_6").to_numpy()
    np.testing.assert_array_equal(np.sort(selection.rows), np.sort(np.argsort(-knn)[:5]))

    def no_embedding(*args, **kwargs):
        raise AssertionError("the selector embedded again although the kNN vectors are saved")

    monkeypatch.setattr("sftpick.selectors.vectors.embed_examples", no_embedding)
    chosen = sftpick.select(out / "scores.parquet", 5, by="knn_6", strategy="kcenter", data=FIXTURE)
    assert len(chosen.rows) == 5
