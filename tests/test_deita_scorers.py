"""DEITA's complexity and quality scorers against a straightforward one-record-at-a-time
implementation of DEITA's own scoring code (hkust-nlp/deita, src/deita/selection/scorer/
base.py and llama_scorer.py; multi-turn as src/deita/pipeline/score_pipeline.py pairs
turns and src/deita/selection/filter/combined_filter.py sums them), on the embedded
SmolLM2-135M and real records."""
import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy.special import softmax

from sftpick import api
from sftpick.examples import to_example
from sftpick.scorers import REJECT
from sftpick.scorers.deita import COMPLEXITY_PROMPT, QUALITY_PROMPT, Deita, DeitaComplexity, DeitaQuality

# DEITA hard-codes LLaMA's ids of "1".."6" (id2score); these are SmolLM2's.
SMOLLM2_ID2SCORE = {33: "1", 34: "2", 35: "3", 36: "4", 37: "5", 38: "6"}

MULTI_TURN = {"conversations": [
    {"from": "human", "value": "Name a prime number."},
    {"from": "gpt", "value": "Seven is a prime number."},
    {"from": "human", "value": "And an even one? Explain why it is the only one."},
    {"from": "gpt", "value": "Two: every other even number is divisible by two, so it has a third divisor."},
]}


@pytest.fixture(scope="module")
def deita():
    scorer = Deita(device="cpu")
    scorer.setup()
    return scorer


@pytest.fixture(scope="module")
def examples(real_dataset):
    return real_dataset.examples[:6]


def deita_reference(lm, prompt: str) -> float:
    """DEITA's infer_score with its generate() call replaced by one plain forward."""
    input_ids = lm.tokenizer.encode(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(input_ids).logits[0, -1].numpy()
    score_logits = np.array([logits[k] for k in SMOLLM2_ID2SCORE])
    return float(np.sum(softmax(score_logits) * np.array([1, 2, 3, 4, 5, 6])))


def sharegpt_turns(conversations: list[dict]) -> list[dict]:
    """DEITA's _load_sharegpt: every even-indexed turn is an instruction, the next its response."""
    return [{"instruction": conversations[i]["value"],
             "response": conversations[i + 1]["value"] if i + 1 < len(conversations) else ""}
            for i in range(0, len(conversations), 2)]


def test_matches_deita_reference_one_record_at_a_time(deita, examples):
    lm = deita.complexity_.lm
    assert deita.complexity_.token_ids == list(SMOLLM2_ID2SCORE)
    complexity = [deita_reference(lm, COMPLEXITY_PROMPT.format(instruction=e.messages[0]["content"]))
                  for e in examples]
    quality = [deita_reference(lm, QUALITY_PROMPT.format(instruction=e.messages[0]["content"], output=e.response))
               for e in examples]
    scores = deita.score(examples)
    np.testing.assert_allclose(scores["deita_complexity"], complexity, atol=1e-5)
    np.testing.assert_allclose(scores["deita_quality"], quality, atol=1e-5)
    np.testing.assert_allclose(scores["deita_score"], np.multiply(complexity, quality), atol=1e-4)
    assert (scores["deita_turns"] == 1).all() and all(r is None for r in scores[REJECT])
    for column in ("deita_complexity", "deita_quality"):
        assert ((scores[column] >= 1) & (scores[column] <= 6)).all()


def test_plain_forward_equals_deitas_generate_scores(deita, examples):
    """DEITA reads `generate(..., output_scores=True).scores[0][0]`; greedy with no logits
    processors, as here, that is the plain forward's last-position logits."""
    lm = deita.complexity_.lm
    ids = lm.tokenizer.encode(COMPLEXITY_PROMPT.format(instruction=examples[0].messages[0]["content"]),
                              return_tensors="pt")
    with torch.no_grad():
        generated = lm.model.generate(ids, max_new_tokens=2, num_return_sequences=1, return_dict_in_generate=True,
                                      output_scores=True, do_sample=False, pad_token_id=lm.tokenizer.eos_token_id)
        plain = lm.model(ids).logits[0, -1]
    rating_ids = list(SMOLLM2_ID2SCORE)
    np.testing.assert_allclose(generated.scores[0][0][rating_ids].numpy(), plain[rating_ids].numpy(), atol=1e-4)


def test_one_by_one_and_packed_batches_agree(deita, examples):
    rater = deita.complexity_
    budget = rater.token_budget
    try:
        rater.token_budget = 1  # one prompt per forward
        one_by_one, _ = rater.rate(examples)
        rater.token_budget = 8192  # every prompt in one forward
        packed, _ = rater.rate(examples)
    finally:
        rater.token_budget = budget
    np.testing.assert_allclose(np.concatenate(packed), np.concatenate(one_by_one), atol=1e-5)


def test_multi_turn_rates_each_turn_alone_and_sums_as_deita_does(deita):
    example = to_example(MULTI_TURN, 0, "sharegpt")
    lm = deita.complexity_.lm
    turns = sharegpt_turns(MULTI_TURN["conversations"])
    complexity = np.array([deita_reference(lm, COMPLEXITY_PROMPT.format(instruction=t["instruction"]))
                           for t in turns])
    quality = np.array([deita_reference(lm, QUALITY_PROMPT.format(instruction=t["instruction"],
                                                                  output=t["response"])) for t in turns])
    scores = deita.score([example])
    assert scores["deita_turns"][0] == 2
    np.testing.assert_allclose(scores["deita_complexity"][0], complexity.sum(), atol=1e-5)
    np.testing.assert_allclose(scores["deita_quality"][0], quality.sum(), atol=1e-5)
    np.testing.assert_allclose(scores["deita_score"][0], (complexity * quality).sum(), atol=1e-4)
    with_system = to_example({"messages": [{"role": "system", "content": "Be brief."}] + [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for t in MULTI_TURN["conversations"]]}, 0, "openai")
    np.testing.assert_allclose(deita.score([with_system])["deita_score"], scores["deita_score"], atol=1e-5)


def test_prompt_over_max_length_is_rejected_not_truncated(examples):
    scorer = DeitaComplexity(device="cpu", max_length=40)
    scorer.setup()
    lengths = scorer.cost(examples)
    scores = scorer.score(examples)
    rejected = np.array([r is not None for r in scores[REJECT]])
    assert rejected.any() and not rejected.all(), "fixture should hold prompts both under and over 40 tokens"
    assert (lengths[rejected] > 40).all() and (lengths[~rejected] <= 40).all()
    assert all("over max_length=40" in r for r in scores[REJECT][rejected])
    assert np.isnan(scores["deita_complexity"][rejected]).all()
    assert not np.isnan(scores["deita_complexity"][~rejected]).any()


def test_a_record_without_a_user_turn_is_rejected(deita):
    example = to_example({"messages": [{"role": "system", "content": "Greet."},
                                       {"role": "assistant", "content": "Hello!"}]}, 0, "openai")
    scores = deita.score([example])
    assert scores[REJECT][0].startswith("no user turn to rate") and np.isnan(scores["deita_score"][0])


def test_options_reach_the_right_scorer_without_loading():
    ifd, complexity, quality = api.build_scorers(
        ["ifd", "deita_complexity", "deita_quality"],
        {"model": "gpt2", "deita_quality_model": "hkust-nlp/deita-quality-scorer", "max_length": None,
         "device": "cpu"})
    assert ifd.model == "gpt2" and ifd.max_length == 1024
    assert complexity.deita_complexity_model == "smollm2-135m" and complexity.max_length == 2048
    assert isinstance(quality, DeitaQuality) and quality.deita_quality_model == "hkust-nlp/deita-quality-scorer"
    with pytest.raises(ValueError, match="max_length=0 should be >= 1"):
        api.build_scorers(["deita"], {"max_length": 0})


def test_cli_run_ranks_by_evol_score(tmp_path, real_dataset):
    """DEITA's pipeline from the command line: both scorers, then the best by deita_score."""
    records = [{"conversations": [{"from": "human", "value": e.messages[0]["content"]},
                                  {"from": "gpt", "value": e.response}]} for e in real_dataset.examples[:2]]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records + [MULTI_TURN]))
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", "run", str(data), "-o", str(out), "--scorers", "deita",
                             "--by", "deita_score", "--budget", "1", "--deita-quality-model", "smollm2-135m",
                             "--max-length", "512", "--device", "cpu", "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    (config,) = manifest["scorers"]
    assert config["scorer"] == "deita" and config["max_length"] == 512 and config["quality_model"] == "smollm2-135m"
    table = pq.read_table(out / "scores.parquet")
    assert table.column("deita_turns").to_pylist() == [1, 1, 2]
    best = table.column("row").to_numpy()[np.argmax(table.column("deita_score").to_numpy())]
    assert json.loads((out / "selected.jsonl").read_text()) == (records + [MULTI_TURN])[best]
