"""LESS gradient features on the real embedded SmolLM2-135M and real records, at a tiny scale:
a two-step LoRA warmup (rank 2, sequences of at most 64 tokens), then per-example gradients
checked against LESS's own way (one record at a time, `loss.backward()`), Adam features
against a hand computation from the saved state, and the block-generated projection against
the whole matrix and against the unprojected cosines."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from scipy.stats import spearmanr

pytest.importorskip("peft")

from sftpick.features.gradients import (feature_config, gradient_features, lora_model, lora_parameters,
                                        per_example_gradients, preconditioned_gradients, project,
                                        rademacher_matrix)
from sftpick.features.warmup import AdamState, load_adam_state, warmup, warmup_subset
from sftpick.models import load_causal_lm
from sftpick.train.data import Encoded, encode
from sftpick.train.finetune import TrainConfig

MAX_LENGTH = 64
WARMUP = TrainConfig(epochs=2, lr=1e-3, batch_size=4, max_length=MAX_LENGTH, lora_rank=2, warmup=0.0,
                     scheduler="linear", template="none")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm():
    return load_causal_lm(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def records(lm, real_dataset) -> list[Encoded]:
    encoded, _ = encode(real_dataset.examples, lm.tokenizer, "none", MAX_LENGTH)
    return [e for e in encoded if e is not None]


@pytest.fixture(scope="module")
def warmed(lm, real_dataset, tmp_path_factory):
    return warmup(lm, real_dataset.examples, tmp_path_factory.mktemp("warmup"), config=WARMUP, fraction=0.16)


@pytest.fixture(scope="module")
def model(lm, warmed):
    return lora_model(lm, warmed.checkpoints[-1])


def shortened(records: list[Encoded], lengths: list[int]) -> list[Encoded]:
    """Real records cut to various lengths, so that a batch of them needs padding."""
    return [Encoded(r.ids[:n], r.n_prompt, r.n_response_full) for r, n in zip(records, lengths)]


def one_at_a_time(model, batch: list[Encoded]) -> torch.Tensor:
    """LESS's `obtain_gradients`: batch size 1, transformers' loss, `loss.backward()`."""
    rows = []
    for record in batch:
        model.zero_grad()
        model(input_ids=torch.tensor([record.ids]), labels=torch.tensor([record.labels()])).loss.backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    model.zero_grad()
    return torch.stack(rows)


def batched(model, batch: list[Encoded], pad_id: int = 2) -> torch.Tensor:
    grads = per_example_gradients(model, lora_parameters(model), batch, pad_id)
    return torch.cat([g.flatten(1) for g in grads.values()], dim=1)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm(dim=1) / b.norm(dim=1)).max().item()


def test_warmup_samples_as_less_does():
    assert warmup_subset(100, 0.05).tolist() == np.random.RandomState(42).permutation(100)[:5].tolist()
    assert warmup_subset(7, 1.0).tolist() == list(range(7))  # the whole pool is not shuffled
    with pytest.raises(ValueError, match="selects none"):
        warmup_subset(10, 0.05)


def test_warmup_saves_each_epoch_with_adam_state_by_parameter_name(warmed, model):
    assert [c.epoch for c in warmed.checkpoints] == [1, 2] and [c.step for c in warmed.checkpoints] == [1, 2]
    # Linear decay over 2 steps without warmup: step 1 at lr, step 2 at lr / 2.
    assert [c.lr_mean for c in warmed.checkpoints] == pytest.approx([1e-3, 5e-4])
    assert warmed.lr_weights == pytest.approx([2 / 3, 1 / 3])
    params = lora_parameters(model)
    first = load_adam_state(warmed.checkpoints[0])
    assert set(first.exp_avg) == set(first.exp_avg_sq) == set(params)
    assert all(first.exp_avg[name].shape == p.shape for name, p in params.items())
    assert set(first.step.values()) == {1.0} and set(load_adam_state(warmed.checkpoints[1]).step.values()) == {2.0}
    assert first.betas == (0.9, 0.999) and first.eps == 1e-8


def test_the_saved_state_is_the_state_that_moved_each_named_weight(lm, warmed):
    """LoRA's B starts at zero, so after one Adam step B = -lr · m̂ / (√v̂ + eps) from B's own
    state: a state filed under another parameter's name (LESS#4) would not reproduce it."""
    state = load_adam_state(warmed.checkpoints[0])
    weights = lora_parameters(lora_model(lm, warmed.checkpoints[0]))
    (b1, b2), eps = state.betas, state.eps
    b_names = [n for n in weights if "lora_B" in n]
    assert all(weights[name].abs().max() > 0 for name in b_names)  # the step moved them
    for name in b_names:
        m_hat, v_hat = state.exp_avg[name] / (1 - b1), state.exp_avg_sq[name] / (1 - b2)
        assert torch.allclose(weights[name], -1e-3 * m_hat / (v_hat.sqrt() + eps), atol=1e-9), name


def test_a_second_warmup_in_the_same_folder_trains_nothing(lm, real_dataset, warmed):
    files = sorted(warmed.folder.rglob("*"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = warmup(lm, real_dataset.examples, warmed.folder, config=WARMUP, fraction=0.16)
    assert not again.trained and again.checkpoints == warmed.checkpoints
    assert sorted(warmed.folder.rglob("*")) == files and [f.stat().st_mtime_ns for f in files] == stamps
    with pytest.raises(ValueError, match="other settings"):
        warmup(lm, real_dataset.examples, warmed.folder, config=WARMUP, fraction=0.2)


def test_batched_gradients_equal_a_one_at_a_time_loop(model, records):
    batch = shortened(records, [64, 51, 40, 33, 22])
    assert relative_error(batched(model, batch), one_at_a_time(model, batch)) < 1e-5


def test_padding_does_not_change_a_records_gradient(model, records):
    short = shortened(records[3:4], [20])
    alone = batched(model, short)
    padded = batched(model, [records[0], short[0]])[1:]  # padded to 64 tokens
    assert relative_error(padded, alone) < 1e-5


def test_adam_features_equal_a_hand_computation(lm, warmed, model, records):
    checkpoint = warmed.checkpoints[-1]
    batch = shortened(records[5:8], [64, 45, 30])
    g = one_at_a_time(model, batch)
    raw = load_file(checkpoint.path / "optimizer.safetensors")
    names = list(lora_parameters(model))
    m = torch.cat([raw[f"exp_avg.{n}"].flatten() for n in names])
    v = torch.cat([raw[f"exp_avg_sq.{n}"].flatten() for n in names])
    t = raw[f"step.{names[0]}"].item() + 1
    m1, v1 = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
    expected = {"adam": (m1 / (1 - 0.9**t)) / ((v1 / (1 - 0.999**t)).sqrt() + 1e-8),
                "adam-code": m1 / (v1 + 1e-8).sqrt(), "sgd": g}
    state = load_adam_state(checkpoint)
    for kind, hand in expected.items():
        (positions, flat), = preconditioned_gradients(model, batch, pad_id=2, preconditioning=kind, state=state,
                                                      token_budget=4096)  # one micro-batch
        assert relative_error(flat[np.argsort(positions)], hand) < 1e-5, kind
    features = gradient_features(lm, checkpoint, batch, dim=32)
    assert features.dtype == np.float32 and np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-6)
    by_hand = F.normalize(expected["adam"] @ rademacher_matrix(g.shape[1], 32, seed=0), dim=1)
    assert np.allclose(features, by_hand.numpy(), atol=1e-4)


def test_projected_cosines_keep_the_unprojected_ranking(model, records):
    parts = list(preconditioned_gradients(model, records, pad_id=2, preconditioning="sgd", state=None,
                                          token_budget=256))
    flat = torch.cat([f for _, f in parts])
    assert len(flat) >= 20
    pairs = np.triu_indices(len(flat), k=1)
    exact = F.normalize(flat, dim=1)
    projected = F.normalize(project(flat, 8192, seed=0), dim=1)
    rho = spearmanr((exact @ exact.T).numpy()[pairs], (projected @ projected.T).numpy()[pairs]).statistic
    assert rho > 0.9


def test_block_projection_equals_the_whole_matrix():
    rng = torch.Generator().manual_seed(0)
    for n_params, dim in [(2500, 13), (1024, 64), (300, 8)]:  # a partial last block, a whole one, one only
        flat = torch.randn(3, n_params, generator=rng)
        whole = rademacher_matrix(n_params, dim, seed=5)
        assert torch.allclose(project(flat, dim, seed=5), flat @ whole, rtol=1e-5, atol=1e-4)
    whole = rademacher_matrix(3000, 64, seed=5)
    assert set(whole.unique().tolist()) == {-1.0, 1.0} and abs(whole.mean().item()) < 0.01
    assert torch.equal(rademacher_matrix(700, 64, seed=5), whole[:700])  # a row depends on (seed, row) only
    assert not torch.equal(rademacher_matrix(700, 64, seed=6), whole[:700])


def test_feature_config_is_plain_data_known_before_loading(warmed):
    config = feature_config("smollm2-135m", checkpoint=warmed.checkpoints[0].id, lora_rank=2)
    assert json.loads(json.dumps(config)) == config
    assert config["revision"].startswith("gguf-sha256:") and config["projection"]["dim"] == 8192
    assert config["preconditioning"] == "adam" and config["checkpoint"].endswith("/epoch-1")
    assert feature_config("smollm2-135m", checkpoint="x", lora_rank=2, preconditioning="sgd") != \
        feature_config("smollm2-135m", checkpoint="x", lora_rank=2)
    with pytest.raises(ValueError, match="not one of adam, adam-code, sgd"):
        feature_config("smollm2-135m", checkpoint="x", lora_rank=2, preconditioning="adamw")


def test_a_state_without_a_parameters_name_is_an_error(model, records, warmed):
    state = load_adam_state(warmed.checkpoints[0])
    missing = next(iter(state.exp_avg))
    broken = AdamState({k: v for k, v in state.exp_avg.items() if k != missing}, state.exp_avg_sq, state.step,
                       state.betas, state.eps)
    with pytest.raises(ValueError, match="no entry for parameter"):
        next(preconditioned_gradients(model, records[:1], pad_id=2, preconditioning="adam", state=broken,
                                      token_budget=256))
