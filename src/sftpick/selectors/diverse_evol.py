"""DiverseEvol (Wu et al., "Self-Evolved Diverse Data Sampling for Efficient Instruction
Tuning", arXiv 2311.08182; OFA-Sys/DiverseEvol @ a22e952): the model chooses its own training
data. Start from a random set; each round fine-tune the base model from scratch on the set so
far, embed the whole pool with the model just trained, and add the records farthest from the
set (k-center greedy, Euclidean, every record chosen so far a center), until the budget is met.

As the code (`train.py`, `evol_schedule_base.py`, `evol_schedules/kcenter_sampling.py`):
- `initial` = 100 random records, then `per_round` = 100 a round; the paper's 10 rounds give
  1,100 (its budget). With a budget N: ceil((N - initial) / per_round) rounds, the last adding
  only what is left; N <= initial takes N of the random draw and trains nothing;
- every round restarts from the base model (`model`) and trains on the cumulative set, with
  the code's recipe: full fine-tuning (`lora_rank` None), 3 epochs, lr 2e-5, cosine schedule,
  3% warmup, no weight decay, batch 64 (its 4 GPUs × 4 × 4 accumulation), 512 tokens, the
  Stanford-Alpaca prompt, loss on the response + EOS; trainer seed 42 (HF's default);
- embedding: the uniform mean of the last hidden state (after the final norm) over every token
  of prompt + response + EOS (as trained, BOS included when the tokenizer adds it), from the
  model just trained, in float32;
- k-center over the whole pool from the chosen set, ties to the lower position (torch's argmax).

Not as the code:
- the initial draw is seeded (`seed`; the code's `torch.randperm` is not);
- distances are clamped at 0 (sftpick's `kcenter_greedy`): the code's sqrt of a slightly
  negative rounding error gives NaN, and an exact duplicate of a chosen record could be picked
  first; here duplicates come last, in pool order, once nothing else is left (as the code's
  argmax over all-zero distances would take them);
- records are embedded in right-padded batches with the padding masked, not one at a time;
- a record whose prompt fills `max_length` is a candidate (embedded as cut) but is left out of
  the fine-tunes (the code trains on it with no response token), counted in `stats_`;
- picks come in pick order (the code sorts each round's picks by position).

Resumable: each round's picks are written atomically to `workdir_/run-<fingerprint>/round-NNN.json`
when the round ends (the fingerprint: the pool's records in order, the model and its revision,
`initial`, `per_round`, `seed` and the training settings). A round file is taken again when it
was made from the same chosen set; a killed run redoes at most the round it was in. The trained
model is not kept (a full fine-tune per round is the model's size each time): only the picks.

CPU settings (the 135M default model): `lora_rank=8, lr=2e-4, epochs=1, batch_size=4,
max_length=256`; see docs/methods/diverse-evol.md for the costs.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..console import make_console
from ..errors import DataError
from ..examples import Example
from ..models import DEFAULT_LM, model_revision, resolve_device
from ..options import option
from ..templates import TEMPLATES, render_prompt
from ..train.config import TrainConfig, check_config
from ..writers import atomic_write
from . import Selector, register
from .kcenter import kcenter_greedy
from .rds import hidden_batches, pad_id

EMBEDDING = "mean of the last hidden state over prompt + response + EOS, float32"


@register
@dataclass(kw_only=True, eq=False)
class DiverseEvol(Selector):
    name = "diverse-evol"
    needs_records = True
    default_scorers = ("len",)  # it ranks nothing: no IFD pass is needed first

    initial: int = option(100, "diverse_evol: records drawn at random (seeded) before the first round (the "
                               "paper's 100).", ge=1)
    per_round: int = option(100, "diverse_evol: records added by k-center each round (the paper's 100).", ge=1)
    model: str = option(DEFAULT_LM, "diverse_evol: the base LM fine-tuned from scratch each round: embedded name, "
                                    "hub id, local folder or .gguf file.")
    device: str = option("auto", "diverse_evol: where it trains and embeds: auto | cpu | cuda | cuda:N.")
    token_budget: int | None = option(None, "diverse_evol: padded tokens per embedding batch (default: 1024 CPU, "
                                            "16384 CUDA).", ge=1)
    epochs: float = option(3.0, "diverse_evol: epochs of each round's fine-tune (the paper's 3).", gt=0)
    lr: float = option(2e-5, "diverse_evol: peak learning rate of each fine-tune (the paper's 2e-5; ~2e-4 suits "
                             "LoRA).", gt=0)
    batch_size: int = option(64, "diverse_evol: records per optimizer step (the paper's effective 64).", ge=1)
    max_length: int = option(512, "diverse_evol: tokens of each record trained on and embedded (the paper's 512).",
                             ge=2)
    lora_rank: int | None = option(None, "diverse_evol: train LoRA adapters of this rank (a CPU setting) instead "
                                         "of all weights (None: full fine-tuning, the paper's).", ge=1)
    max_steps: int | None = option(None, "diverse_evol: stop each fine-tune after this many optimizer steps "
                                         "(quick checks).", ge=1)
    template: str = option("alpaca", "diverse_evol: prompt template trained on and embedded: alpaca (the code's) "
                                     "| none | chat.", choices=TEMPLATES)
    seed: int = option(42, "diverse_evol: seed of the initial draw and of training (the code's trainer seed).")

    def train_config(self) -> TrainConfig:
        """Each round's fine-tune: the options, with the code's schedule (cosine, 3% warmup, no decay)."""
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, max_length=self.max_length,
                           seed=self.seed, lora_rank=self.lora_rank, template=self.template, warmup=0.03,
                           scheduler="cosine", weight_decay=0.0, max_steps=self.max_steps)

    def check(self) -> None:
        super().check()
        check_config(self.train_config())
        resolve_device(self.device)

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions in pick order: the initial draw, then each round's k-center picks."""
        records = getattr(self, "records_", None)
        if records is None or len(records) != table.num_rows:
            raise DataError("diverse_evol trains on the records: give the data with the scores "
                            "(select(..., data=FILE))")
        n, rows = len(records), table.column("row").to_numpy()
        self.notes_ = []
        if budget >= n:
            self.notes_ = [f"diverse_evol: the budget ({budget}) takes the whole pool of {n}: no model trained"]
            self.stats_ = {"initial": None, "rounds": [], "fine_tunes": 0, "rounds_resumed": 0}
            return np.arange(n)
        draw = np.sort(np.random.default_rng(self.seed).permutation(n)[:min(self.initial, budget)])
        self.stats_ = {"initial": {"rows": rows[draw].tolist(), "seed": self.seed}, "rounds": [], "fine_tunes": 0,
                       "rounds_resumed": 0, "model": self.model, "revision": model_revision(self.model),
                       "train": self.train_config().to_dict(), "embedding": EMBEDDING}
        if budget <= self.initial:
            if budget < self.initial:
                self.notes_ = [f"diverse_evol: the budget ({budget}) is under initial={self.initial}: a seeded "
                               "random draw of the budget, no round run"]
            return draw
        workdir = getattr(self, "workdir_", None) or tempfile.mkdtemp(prefix="sftpick-diverse_evol-")
        folder = Path(workdir) / f"run-{self.fingerprint(records)}"
        self.stats_["workdir"] = str(folder)
        rounds = math.ceil((budget - len(draw)) / self.per_round)
        chosen = draw.tolist()
        pool = _Pool(self, records)
        for r in range(1, rounds + 1):
            count = min(self.per_round, budget - len(chosen))
            done = load_round(folder / f"round-{r:03d}.json", chosen, count)
            if done is None:
                done = self.run_round(pool, np.asarray(chosen), count, r, rounds)
                done["rows"] = rows[done["added"]].tolist()
                atomic_write(folder / f"round-{r:03d}.json", json.dumps(done, indent=1))
                self.stats_["fine_tunes"] += 1
            else:
                self.stats_["rounds_resumed"] += 1
            chosen += done["added"]
            self.stats_["rounds"].append({k: v for k, v in done.items() if k not in ("before", "added")})
        self.stats_["untrainable"] = pool.untrainable  # None when every round was resumed (nothing tokenized)
        return np.asarray(chosen, dtype=np.int64)

    def run_round(self, pool: "_Pool", chosen: np.ndarray, count: int, r: int, rounds: int) -> dict:
        """One round: fine-tune the base model on `chosen`, embed the pool, add `count` by k-center."""
        import torch

        from ..train.finetune import fine_tune

        lm = pool.lm()
        encoded = [pool.encoded[i] for i in chosen if pool.encoded[i] is not None]
        if not encoded:
            raise DataError(f"diverse_evol: no chosen record fits max_length={self.max_length} to train on")
        model = copy.deepcopy(lm.model).to(pool.device)
        tuned = fine_tune(model, lm.tokenizer, encoded, self.train_config(), progress=False,
                          label=f"diverse_evol round {r}")
        started = time.perf_counter()
        budget = self.token_budget or (16384 if pool.device.startswith("cuda") else 1024)
        vectors = mean_hidden(tuned.model, pool.ids, pad_id=pad_id(lm.tokenizer), token_budget=budget)
        embed_seconds = time.perf_counter() - started
        steps, seconds, final_loss = tuned.steps, tuned.seconds, (tuned.losses[-1] if tuned.losses else None)
        del model, tuned
        if pool.device.startswith("cuda"):
            torch.cuda.empty_cache()
        added, radius = kcenter_round(vectors, chosen, count)
        make_console().print(f"diverse_evol: round {r}/{rounds}: fine-tuned on {len(encoded)} records, embedded "
                             f"{len(pool.ids)} ({embed_seconds:.0f} s), added {len(added)}")
        return {"round": r, "before": chosen_digest(chosen.tolist()), "trained_on": len(encoded),
                "added": added.tolist(), "covering_radius": radius,
                "fine_tune": {"steps": steps, "seconds": round(seconds, 3), "final_loss": final_loss},
                "embed_seconds": round(embed_seconds, 3)}

    def fingerprint(self, records: list[Example]) -> str:
        """What a round's picks depend on, known without loading anything (the budget aside:
        it only says how many rounds run)."""
        pool = hashlib.sha256("\n".join(e.content_hash for e in records).encode()).hexdigest()
        key = {"method": "diverse_evol", "pool": pool, "model": self.model, "revision": model_revision(self.model),
               "initial": self.initial, "per_round": self.per_round, "seed": self.seed,
               "train": self.train_config().to_dict(), "embedding": EMBEDDING}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class _Pool:
    """The base model (on the CPU: each round copies it to the device) and the pool's tokens,
    made when a round first needs them."""

    def __init__(self, selector: DiverseEvol, records: list[Example]):
        self.selector, self.records = selector, records
        self.device = resolve_device(selector.device)
        self.untrainable = None

    @functools.cache
    def lm(self):
        from ..models import load_causal_lm
        from ..train.data import encode

        lm = load_causal_lm(self.selector.model, device="cpu", dtype="float32")
        config = self.selector.train_config()
        self.encoded, _ = encode(self.records, lm.tokenizer, config.template, config.max_length)
        self.ids = [e.ids if e is not None else _cut(record, lm.tokenizer, config)
                    for e, record in zip(self.encoded, self.records)]
        self.untrainable = sum(e is None for e in self.encoded)
        return lm


def _cut(example: Example, tokenizer, config: TrainConfig) -> list[int]:
    """The tokens of a record whose prompt fills max_length, as training would cut them."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    whole = render_prompt(example, config.template, tokenizer) + example.response
    return (tokenizer(whole)["input_ids"] + eos)[:config.max_length]


def mean_hidden(model, ids: list[list[int]], *, pad_id: int, token_budget: int) -> np.ndarray:
    """DiverseEvol's vectors [len(ids), h] float32: the mean of the last hidden state over each
    record's real tokens (padding masked), batched."""
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    for batch, hidden, mask in hidden_batches(model, ids, pad_id=pad_id, token_budget=token_budget):
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        out[batch] = ((hidden * weights).sum(dim=1) / weights.sum(dim=1)).float().cpu().numpy()
    return out


def kcenter_round(vectors: np.ndarray, chosen: np.ndarray, count: int) -> tuple[np.ndarray, float | None]:
    """DiverseEvol's k-center step (`KCenterSampling.query`): `count` positions of `vectors`, in
    pick order, each the farthest (Euclidean) from its nearest chosen record, every record
    chosen so far a center; then the covering radius. When only duplicates of chosen records
    are left (distance 0), the lowest positions not chosen, as the code's argmax takes them."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    picks, radius = kcenter_greedy(vectors, count, vectors[chosen])
    if len(picks) < count:
        taken = np.zeros(len(vectors), dtype=bool)
        taken[chosen], taken[picks] = True, True
        picks = np.concatenate([picks, np.flatnonzero(~taken)[:count - len(picks)]])
        radius = 0.0
    return picks.astype(np.int64), radius


def chosen_digest(chosen: list[int]) -> str:
    return hashlib.sha256(json.dumps(sorted(int(p) for p in chosen)).encode()).hexdigest()[:16]


def load_round(path: Path, chosen: list[int], count: int) -> dict | None:
    """A finished round's record when it was made from `chosen` and added `count`, else None."""
    if not path.exists():
        return None
    try:
        done = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if done.get("before") != chosen_digest(chosen) or len(done.get("added", ())) != count:
        return None
    return done
