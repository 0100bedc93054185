"""LESS step 2: gradient features of records at one warmup checkpoint (Xia et al., "LESS:
Selecting Influential Data for Targeted Instruction Tuning", arXiv 2402.04333;
princeton-nlp/LESS @ 8abf962, `less/data_selection/collect_grad_reps.py`).

1. g = the gradient of a record's mean cross-entropy over its response tokens with respect to
   the LoRA weights, the model in eval mode (no dropout), flattened in `named_parameters()`
   order. LESS runs batch size 1 (a batch's loss would mix the records' gradients, LESS#42);
   here torch.func's `vmap(grad(loss))` computes one gradient per record over right-padded
   micro-batches. No attention mask is needed: under the causal mask no real token sees the
   pads after it, and pads carry no loss, so padding leaves a record's gradient unchanged.
2. Training records get Adam's update direction from the checkpoint's optimizer state, with
   m' = b1·m + (1-b1)·g and v' = b2·v + (1-b2)·g²:
   - "adam" (the paper's, default): m̂ / (√v̂ + eps), m̂ = m' / (1-b1^t), v̂ = v' / (1-b2^t),
     t = the checkpoint's step + 1 (the update this gradient would make);
   - "adam-code" (LESS's code, `obtain_gradients_with_adam`): m' / √(v' + eps), no bias
     correction, eps under the root. The bias factors scale every coordinate alike and vanish
     under the cosine; eps does not: under the root it floors the denominator at 1e-4 rather
     than 1e-8, damping coordinates whose v' is tiny.
   Target records get g itself ("sgd").
3. A Rademacher (±1) projection to `dim` = 8192 (LESS's): g @ R, R [P, dim] made in blocks of
   1024 rows, block b from PCG64 seeded by SeedSequence([seed, b]) (bit k of a block is bit
   k mod 64 of its raw output k // 64; 1 -> +1, 0 -> -1). R never exists whole, and it is the
   same on every device (LESS's CUDA and CPU projectors, from trak, make different matrices).
   No 1/√dim scaling, as LESS: the next step removes any scale, and cosines ignore it.
4. L2 normalisation. Features are float32 [n, dim] (all the arithmetic is fp32; LESS casts to
   fp16 before projecting); the caller may store float16.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ..models import LoadedLM, model_revision
from ..spans import micro_batches
from ..train.data import IGNORE, Encoded
from .settings import DEFAULT_DIM
from .warmup import AdamState, Checkpoint, load_adam_state

PRECONDITIONING = ("adam", "adam-code", "sgd")
BLOCK_ROWS = 1024  # rows of R per seeded block: part of R's definition, do not change
_PIECE_ROWS = 64  # rows decoded and multiplied at a time on a CPU: they stay in cache
_SIGNS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(np.float32) * 2 - 1


def feature_config(model: str, *, checkpoint: str, lora_rank: int, preconditioning: str = "adam",
                   dim: int = DEFAULT_DIM, seed: int = 0, template: str = "alpaca", max_length: int = 2048) -> dict:
    """What makes a feature, known without loading anything: it keys a feature cache."""
    _check(preconditioning, dim, seed)
    return {"featurizer": "less-gradients", "model": model, "revision": model_revision(model),
            "checkpoint": checkpoint, "lora_rank": lora_rank, "preconditioning": preconditioning,
            "projection": {"kind": "rademacher", "dim": dim, "seed": seed, "scaled": False,
                           "generator": f"pcg64-seedsequence(seed,block)-{BLOCK_ROWS}-rows"},
            "loss": "mean response-token cross-entropy, eval mode", "template": template,
            "max_length": max_length, "normalised": True}


def gradient_features(lm: LoadedLM, checkpoint: Checkpoint, encoded: list[Encoded], *,
                      preconditioning: str = "adam", dim: int = DEFAULT_DIM, seed: int = 0,
                      token_budget: int | None = None, chunk_mib: int = 1024) -> np.ndarray:
    """Unit-norm projected gradient features [len(encoded), dim], float32. Records are run in
    micro-batches of at most `token_budget` padded tokens (default: `default_token_budget`)
    and projected together up to `chunk_mib` of gradients (R is generated once per chunk)."""
    token_budget = token_budget or default_token_budget(lm.device)
    _check(preconditioning, dim, seed)
    _check_records(encoded, token_budget)
    model = lora_model(lm, checkpoint)
    state = load_adam_state(checkpoint) if preconditioning != "sgd" else None
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    n_params = sum(p.numel() for p in lora_parameters(model).values())
    chunk_rows = max(1, (chunk_mib << 20) // (4 * n_params))
    features = np.zeros((len(encoded), dim), dtype=np.float32)
    pending: list[tuple[np.ndarray, torch.Tensor]] = []
    for positions, flat in preconditioned_gradients(model, encoded, pad_id=pad_id, preconditioning=preconditioning,
                                                    state=state, token_budget=token_budget):
        pending.append((positions, flat))
        if sum(len(p) for p, _ in pending) >= chunk_rows:
            _project_into(features, pending, dim, seed)
            pending = []
    if pending:
        _project_into(features, pending, dim, seed)
    return features


def default_token_budget(device: str) -> int:
    """Padded tokens per micro-batch. On a CPU, larger batches ran slower per record (one
    thread, 128-token records: 1.0-1.2 records/s at 256, 0.6 at 1024), their activations no
    longer in cache; on a GPU, a memory bound for a 7B model at LESS's 2048 tokens (unmeasured)."""
    return 4096 if str(device).startswith("cuda") else 256


def lora_model(lm: LoadedLM, checkpoint: Checkpoint):
    """A copy of `lm.model` with the checkpoint's LoRA weights, in eval mode, with eager
    attention: vmap has batching rules for its operations, not for the fused sdpa kernels."""
    from peft import PeftModel

    base = copy.deepcopy(lm.model)
    base.set_attn_implementation("eager")
    return PeftModel.from_pretrained(base, checkpoint.path, is_trainable=True).eval()


def lora_parameters(model) -> dict[str, torch.Tensor]:
    """The trainable (LoRA) weights by name, in `named_parameters()` order, detached."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def preconditioned_gradients(model, encoded: list[Encoded], *, pad_id: int, preconditioning: str,
                             state: AdamState | None, token_budget: int
                             ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """(positions in `encoded`, flattened fp32 gradients [len(positions), P]) per micro-batch,
    shortest records first (no input validation)."""
    params = lora_parameters(model)
    if state is not None:
        state = _on_device(_checked_state(state, params), next(iter(params.values())).device)
    lengths = np.array([len(e.ids) for e in encoded])
    for positions in micro_batches(lengths, token_budget):
        grads = per_example_gradients(model, params, [encoded[i] for i in positions], pad_id)
        grads = precondition(grads, preconditioning, state)
        yield positions, torch.cat([g.flatten(1).float() for g in grads.values()], dim=1)


def per_example_gradients(model, params: dict[str, torch.Tensor], batch: list[Encoded], pad_id: int
                          ) -> dict[str, torch.Tensor]:
    """name -> [len(batch), *shape]: each record's gradient of its mean response loss."""
    device = next(iter(params.values())).device
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        labels[row, : len(e.ids)] = torch.tensor(e.labels())

    def loss(params, ids, labels):
        logits = functional_call(model, params, args=(), kwargs={"input_ids": ids[None], "use_cache": False}).logits
        return response_loss(logits[0], labels)

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, ids.to(device), labels.to(device))


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the labelled tokens (transformers' causal-LM loss, one record)."""
    targets = labels[1:]
    scored = targets != IGNORE
    log_probs = torch.log_softmax(logits[:-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0)[:, None])[:, 0]
    return -(picked * scored).sum() / scored.sum()


def precondition(grads: dict[str, torch.Tensor], kind: str, state: AdamState | None) -> dict[str, torch.Tensor]:
    """Adam's update direction for each gradient ("adam", "adam-code"), or the gradient ("sgd")."""
    if kind == "sgd":
        return grads
    (b1, b2), eps = state.betas, state.eps
    out = {}
    for name, g in grads.items():
        g = g.float()
        m = b1 * state.exp_avg[name] + (1 - b1) * g
        v = b2 * state.exp_avg_sq[name] + (1 - b2) * g * g
        if kind == "adam-code":
            out[name] = m / torch.sqrt(v + eps)
        else:
            t = state.step[name] + 1
            out[name] = (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + eps)
    return out


def project(flat: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """`flat` [n, P] @ R[:P] [P, dim], R generated block by block and never held whole."""
    n_params = flat.shape[1]
    out = torch.zeros(len(flat), dim, dtype=torch.float32, device=flat.device)
    piece = _PIECE_ROWS if flat.device.type == "cpu" else BLOCK_ROWS
    for block in range(math.ceil(n_params / BLOCK_ROWS)):
        bits = torch.from_numpy(rademacher_bits(seed, block, dim)).to(flat.device)
        start = block * BLOCK_ROWS
        for first in range(start, min(start + BLOCK_ROWS, n_params), piece):
            last = min(first + piece, n_params)
            signs = _decode(bits[(first - start) * dim // 8: -(-(last - start) * dim // 8)], last - first, dim)
            out.addmm_(flat[:, first:last].float(), signs)
    return out


def rademacher_bits(seed: int, block: int, dim: int) -> np.ndarray:
    """Block `block` of R, packed: BLOCK_ROWS·dim bits, as bytes."""
    words = BLOCK_ROWS * dim // 64
    raw = np.random.PCG64(np.random.SeedSequence([seed, block])).random_raw(words)
    return raw.astype("<u8").view(np.uint8)


def rademacher_matrix(n_rows: int, dim: int, seed: int) -> torch.Tensor:
    """R[:n_rows] [n_rows, dim] built whole: for checks on small sizes."""
    blocks = [_decode(torch.from_numpy(rademacher_bits(seed, b, dim)), BLOCK_ROWS, dim)
              for b in range(math.ceil(n_rows / BLOCK_ROWS))]
    return torch.cat(blocks)[:n_rows]


def _decode(packed: torch.Tensor, rows: int, dim: int) -> torch.Tensor:
    """Packed bits (at least rows·dim of them, from a byte boundary) -> ±1 floats [rows, dim]."""
    signs = torch.from_numpy(_SIGNS).to(packed.device)
    return F.embedding(packed.long(), signs).view(-1)[: rows * dim].view(rows, dim)


def _project_into(features: np.ndarray, pending: list[tuple[np.ndarray, torch.Tensor]], dim: int, seed: int) -> None:
    positions = np.concatenate([p for p, _ in pending])
    projected = project(torch.cat([flat for _, flat in pending]), dim, seed)
    features[positions] = F.normalize(projected, dim=1).cpu().numpy()


def _checked_state(state: AdamState, params: dict[str, torch.Tensor]) -> AdamState:
    for name, p in params.items():
        if name not in state.exp_avg:
            raise ValueError(f"the checkpoint's Adam state has no entry for parameter {name!r}: "
                             "it was saved from another model or LoRA configuration")
        if state.exp_avg[name].shape != p.shape:
            raise ValueError(f"Adam state of {name!r} has shape {tuple(state.exp_avg[name].shape)}, "
                             f"the parameter {tuple(p.shape)}")
    return state


def _on_device(state: AdamState, device: torch.device) -> AdamState:
    return AdamState({k: v.to(device) for k, v in state.exp_avg.items()},
                     {k: v.to(device) for k, v in state.exp_avg_sq.items()}, state.step, state.betas, state.eps)


def _check(preconditioning: str, dim: int, seed: int) -> None:
    if preconditioning not in PRECONDITIONING:
        raise ValueError(f"preconditioning={preconditioning!r} is not one of {', '.join(PRECONDITIONING)}")
    if dim < 1:
        raise ValueError(f"dim={dim} should be >= 1")
    if seed < 0:
        raise ValueError(f"seed={seed} should be >= 0")


def _check_records(encoded: list[Encoded], token_budget: int) -> None:
    if token_budget < 1:
        raise ValueError(f"token_budget={token_budget} should be >= 1")
    for i, e in enumerate(encoded):
        if len(e.ids) - max(e.n_prompt, 1) < 1:
            raise ValueError(f"record {i} has no response token to take a loss on")
