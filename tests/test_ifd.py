"""IFD against a naive one-record-at-a-time implementation of the definitions (the
reference scripts' way: `model(ids, labels=labels).loss`, batch size 1)."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from sftpick.examples import to_example
from sftpick.scorers import REJECT
from sftpick.scorers.ifd import CHERRY_DIRECT_PREFIX, IFDScorer
from sftpick.templates import render_prompt


def naive_losses(model, tokenizer, prompt: str, response: str, max_length: int, variant: str):
    """Mean response cross-entropy with and without the prompt, one record at a time."""
    n_prompt = len(tokenizer.encode(prompt))
    whole = tokenizer.encode(prompt + response, return_tensors="pt", truncation=True, max_length=max_length)
    labels = whole.clone()
    labels[0, :n_prompt] = -100
    if variant == "cherry":
        direct = tokenizer.encode(CHERRY_DIRECT_PREFIX + response, return_tensors="pt", truncation=True,
                                  max_length=max_length - n_prompt + 4)
        direct_labels = direct.clone()
        direct_labels[0, : len(tokenizer.encode(CHERRY_DIRECT_PREFIX))] = -100
    else:
        direct = tokenizer.encode(response, return_tensors="pt", truncation=True,
                                  max_length=max_length - n_prompt + 1)
        direct_labels = direct
    with torch.no_grad():
        loss_cond = model(whole, labels=labels).loss.item()
        loss_direct = model(direct, labels=direct_labels).loss.item()
    return loss_cond, loss_direct


def naive_ifd(scorer, examples, variant="superfiltering", max_length=1024):
    lm = scorer.lm_
    losses = np.array([naive_losses(lm.model, lm.tokenizer, render_prompt(e, scorer.template_, lm.tokenizer),
                                    e.response, max_length, variant) for e in examples])
    ifd = losses[:, 0] / losses[:, 1] if variant == "cherry" else np.exp(losses[:, 0] - losses[:, 1])
    return ifd, losses


def assert_matches_reference(scores, ifd, losses):
    if len(ifd) > 2:
        assert spearmanr(scores["ifd"], ifd).statistic >= 0.999
    np.testing.assert_allclose(scores["ifd"], ifd, rtol=1e-3)
    np.testing.assert_allclose(scores["loss_cond"], losses[:, 0], rtol=1e-3)
    np.testing.assert_allclose(scores["loss_direct"], losses[:, 1], rtol=1e-3)


def test_superfiltering_ifd_matches_naive_reference(ifd_scorer, real_dataset):
    examples = real_dataset.examples
    scores = ifd_scorer.score(examples)
    ifd, losses = naive_ifd(ifd_scorer, examples)
    assert_matches_reference(scores, ifd, losses)
    np.testing.assert_allclose(scores["ppl_cond"], np.exp(losses[:, 0]), rtol=1e-3)
    assert all(reason is None for reason in scores[REJECT])
    assert (scores["n_response_tokens"] > 0).all() and (scores["n_prompt_tokens"] > 0).all()


def test_cherry_variant_matches_naive_reference(real_dataset):
    scorer = IFDScorer(device="cpu", variant="cherry")
    scorer.setup()
    assert scorer.template_ == "alpaca"
    examples = real_dataset.examples[:10]
    ifd, losses = naive_ifd(scorer, examples, variant="cherry")
    assert_matches_reference(scorer.score(examples), ifd, losses)


def test_truncation_follows_reference_and_full_prompts_are_rejected(real_dataset):
    scorer = IFDScorer(device="cpu", max_length=48)
    scorer.setup()
    examples = real_dataset.examples
    scores = scorer.score(examples)
    n_prompt = scores["n_prompt_tokens"]
    rejected = np.array([r is not None for r in scores[REJECT]])
    assert rejected.any() and not rejected.all(), "fixture should hold prompts both shorter and longer than 48 tokens"
    assert all("prompt fills max_length=48" in r for r in scores[REJECT][rejected])
    assert (n_prompt[rejected] >= 48).all() and (n_prompt[~rejected] < 48).all()
    assert np.isnan(scores["ifd"][rejected]).all()
    kept = [e for e, r in zip(examples, rejected) if not r]
    ifd, losses = naive_ifd(scorer, kept, max_length=48)
    assert_matches_reference({k: v[~rejected] for k, v in scores.items()}, ifd, losses)


def test_batching_does_not_change_scores(ifd_scorer, real_dataset):
    examples = real_dataset.examples[:12]
    budget = ifd_scorer.token_budget_
    try:
        ifd_scorer.token_budget_ = 64  # one sequence per batch
        one_by_one = ifd_scorer.score(examples)["ifd"]
        ifd_scorer.token_budget_ = 8192
        packed = ifd_scorer.score(examples)["ifd"]
    finally:
        ifd_scorer.token_budget_ = budget
    np.testing.assert_allclose(packed, one_by_one, rtol=1e-4)


def test_packed_sequences_give_the_padded_scores(ifd_scorer, real_dataset):
    """Sequences in one row without padding, positions restarting at 0 for each: attention
    stays within each sequence (a leak would move every loss but the first)."""
    from sftpick.perplexity import SpanLoss

    examples = real_dataset.examples[:12]
    padded = ifd_scorer.score(examples)
    kernel, budget = ifd_scorer.loss_, ifd_scorer.token_budget_
    rows = []
    try:
        ifd_scorer.loss_ = SpanLoss(kernel.model, pad_id=kernel.pad_id, packed=True)
        forward = ifd_scorer.loss_._batch
        ifd_scorer.loss_._batch = lambda spans: rows.append(len(spans)) or forward(spans)
        ifd_scorer.token_budget_ = 2048
        packed = ifd_scorer.score(examples)
    finally:
        ifd_scorer.loss_, ifd_scorer.token_budget_ = kernel, budget
    assert sum(rows) == 2 * len(examples) and max(rows) >= 8  # a row holds many sequences
    for column in ("ifd", "loss_cond", "loss_direct"):
        np.testing.assert_allclose(packed[column], padded[column], rtol=1e-5, err_msg=column)
    assert_matches_reference(packed, *naive_ifd(ifd_scorer, examples))
    assert IFDScorer(packing=True).config()["packing"] is True and "packing" not in IFDScorer().config()


def test_chat_template_scores_last_assistant_turn_given_all_earlier_turns():
    record = {"messages": [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "Seven is a prime number."},
        {"role": "user", "content": "And an even one?"},
        {"role": "assistant", "content": "Two is the only even prime number, since every other even number is divisible by two."},
    ]}
    example = to_example(record, 0, "openai")
    scorer = IFDScorer(device="cpu", template="chat")
    scorer.setup()
    prompt = render_prompt(example, "chat", scorer.lm_.tokenizer)
    assert "Seven is a prime" in prompt and "And an even one?" in prompt and "Two is the only" not in prompt
    scores = scorer.score([example])
    ifd, losses = naive_ifd(scorer, [example])
    assert_matches_reference(scores, ifd, losses)


def test_template_moves_ifd(ifd_scorer, real_dataset):
    """How much the prompt template moves IFD is something users ask; it must at least change it."""
    examples = real_dataset.examples[:8]
    alpaca = IFDScorer(device="cpu", template="alpaca")
    alpaca.setup()
    assert not np.allclose(alpaca.score(examples)["ifd"], ifd_scorer.score(examples)["ifd"], rtol=1e-3)


@pytest.mark.parametrize("options, match", [
    ({"variant": "nope"}, "variant='nope' is not one of"),
    ({"template": "fancy"}, "template='fancy' is not one of"),
    ({"max_length": 1}, "max_length=1 should be >= 2"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        IFDScorer(device="cpu", **options).setup()
