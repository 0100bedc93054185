"""LESS gradient features: records/s batched (torch.func vmap over padded micro-batches)
against one record at a time (LESS's `collect_grads`: batch size 1, `loss.backward()`), in
the same run, on the same checkpoint and the same real records.

Two figures per way: the per-example gradients alone, and whole features (Adam
preconditioning, the Rademacher projection, normalisation). The one-at-a-time features
project every 16 records as LESS does (`project_interval`); `gradient_features` projects
its whole chunk at once. The checkpoint comes from a one-step LoRA warmup made here.

    python benchmarks/gradients.py [--records 64] [--max-length 128] [--lora-rank 8]
        [--dim 8192] [--token-budget N] [--device cpu] [--threads 1] [--data FILE]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from sftpick.data import sample_path
from sftpick.features.gradients import (default_token_budget, gradient_features, lora_model, lora_parameters,
                                        per_example_gradients, precondition, project)
from sftpick.features.settings import LESS_WARMUP
from sftpick.features.warmup import AdamState, load_adam_state, warmup
from sftpick.io import read_dataset
from sftpick.models import DEFAULT_LM, load_causal_lm
from sftpick.train.data import encode

LESS_PROJECT_EVERY = 16


def one_at_a_time(model, encoded, state: AdamState | None, dim: int, seed: int) -> np.ndarray:
    """LESS's loop: one record's loss.backward() at a time, projected every 16 records."""
    device = next(model.parameters()).device
    features, pending = [], []
    for i, record in enumerate(encoded):
        model.zero_grad()
        model(input_ids=torch.tensor([record.ids], device=device),
              labels=torch.tensor([record.labels()], device=device)).loss.backward()
        grads = {name: p.grad[None] for name, p in model.named_parameters() if p.requires_grad}
        if state is not None:
            grads = precondition(grads, "adam", state)
        pending.append(torch.cat([g.flatten(1).float() for g in grads.values()], dim=1))
        if len(pending) == LESS_PROJECT_EVERY or i == len(encoded) - 1:
            features.append(F.normalize(project(torch.cat(pending), dim, seed), dim=1).cpu().numpy())
            pending = []
    model.zero_grad()
    return np.concatenate(features)


def batched_gradients(model, encoded, token_budget: int, pad_id: int) -> None:
    from sftpick.spans import micro_batches

    params = lora_parameters(model)
    for positions in micro_batches(np.array([len(e.ids) for e in encoded]), token_budget):
        per_example_gradients(model, params, [encoded[i] for i in positions], pad_id)


def loop_gradients(model, encoded) -> None:
    device = next(model.parameters()).device
    for record in encoded:
        model.zero_grad()
        model(input_ids=torch.tensor([record.ids], device=device),
              labels=torch.tensor([record.labels()], device=device)).loss.backward()
    model.zero_grad()


def on_device(state: AdamState, device: str) -> AdamState:
    move = lambda tensors: {k: v.to(device) for k, v in tensors.items()}  # noqa: E731
    return AdamState(move(state.exp_avg), move(state.exp_avg_sq), state.step, state.betas, state.eps)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--data", default=str(sample_path()))
    parser.add_argument("--model", default=DEFAULT_LM)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--token-budget", type=int, help="default: gradients.default_token_budget(device)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.token_budget = args.token_budget or default_token_budget(args.device)

    lm = load_causal_lm(args.model, device=args.device, dtype="float32" if args.device == "cpu" else "auto")
    examples = read_dataset(args.data).examples
    encoded = [e for e in encode(examples, lm.tokenizer, "alpaca", args.max_length)[0] if e is not None]
    encoded = encoded[: args.records]
    config = replace(LESS_WARMUP, lora_rank=args.lora_rank, max_length=args.max_length, batch_size=4, max_steps=1)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = warmup(lm, examples, folder, config=config, fraction=0.05).checkpoints[-1]
        model = lora_model(lm, checkpoint)
        state = on_device(load_adam_state(checkpoint), lm.device)
        pad_id = lm.tokenizer.pad_token_id or 0
        n_params = sum(p.numel() for p in lora_parameters(model).values())
        print(f"model {args.model}, device {lm.device}, {torch.get_num_threads()} threads, dtype {lm.dtype}, "
              f"LoRA rank {args.lora_rank} ({n_params:,} weights), dim {args.dim}")
        print(f"{len(encoded)} real records from {os.path.basename(args.data)}, "
              f"{sum(len(e.ids) for e in encoded):,} tokens (max_length {args.max_length}), "
              f"token budget {args.token_budget}; load average before {os.getloadavg()}")
        seconds = {
            "gradients, one at a time": timed(lambda: loop_gradients(model, encoded)),
            "gradients, batched": timed(lambda: batched_gradients(model, encoded, args.token_budget, pad_id)),
        }
        loop_features: list[np.ndarray] = []
        seconds["features, one at a time"] = timed(
            lambda: loop_features.append(one_at_a_time(model, encoded, state, args.dim, 0)))
        ours: list[np.ndarray] = []
        seconds["features, batched"] = timed(lambda: ours.append(gradient_features(
            lm, checkpoint, encoded, dim=args.dim, token_budget=args.token_budget)))
    print(f"load average after {os.getloadavg()}")
    print(f"{'':28s} {'records/s':>10s} {'x one at a time':>16s}")
    for name, spent in seconds.items():
        baseline = seconds[name.split(",")[0] + ", one at a time"]
        print(f"{name:28s} {len(encoded) / spent:10.2f} {baseline / spent:16.2f}")
    print(f"largest difference between the two ways' features: {np.abs(loop_features[0] - ours[0]).max():.2e}")


if __name__ == "__main__":
    main()
