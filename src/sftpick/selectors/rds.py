"""RDS+ (Ivison et al., "Large-Scale Data Selection for Instruction Tuning", arXiv 2503.01807;
hamishivi/automated-instruction-selection @ df71a04): embed every candidate and every target
example with the base LM (not fine-tuned) as the position-weighted mean of its last hidden
state, then pick round-robin over the targets, each taking its most cosine-similar candidate.

As the code (`minimal_multitask/compute_influence_cosinesim.py --pooling weighted_mean`,
`utils.py::encode_with_messages_format`, `data.py::construct_test_sample`,
`get_top_influences.py --selection_method max`):
- a candidate is its whole conversation in the Tulu format the code trains with,
  `<|user|>\\n{u}\\n<|assistant|>\\n{a}</s>\\n…` (every turn stripped, EOS after each assistant
  turn, the whole stripped), tokenized in one call (the tokenizer adds BOS if it does);
- a target is its prompt in the Tulu chat format, ending in `<|assistant|>\\n`, tokenized with
  special tokens, followed by its response + EOS tokenized without: prompt and response both;
- e = Σ_t w_t h_t over the last layer's states (after the final norm), w_t = t / Σ_s s, t = 1…L;
  vectors in float32 (the code's bf16 states times its fp32 weights), L2-normalised, cosine;
- round-robin: pass after pass, each target takes its most similar candidate (ties to the
  lower position, as the code's stable sort) until the budget is filled;
- targets in a seeded order: `target_order="shuffled"` (default) is the permutation that
  Hugging Face datasets' `shuffle(seed=42)` applies, `np.random.default_rng(42).permutation`,
  which the code applies to every query set of the paper's experiments; `"file"` keeps the
  file's order, as the code's `FileDataset` (a user's own query file) does;
- subtasks (`--target-subtask`): the code's multi-task selection
  (`get_top_aggregated_influences.py`, max, round robin): each subtask scores a candidate by its
  best target, and the subtasks (in sorted name order; the code: the order of its input files)
  take turns.

Not as the code:
- duplicates: a target whose best remaining candidate was taken by another goes on to its
  next (`rds_duplicates="skip"`, default: every turn adds a record); the code pops it and
  loses the turn (`"forfeit"`, offered), at both levels;
- batches: the code runs one record at a time (its pooling ignores the mask); here records
  are batched, right-padded, and the weights count real tokens only, so a padded record pools
  exactly as alone;
- length: one `max_length` (default 2048, the code's for training data) for both sides, the
  target's prompt and response cut together (the code cuts each at 512 for a query file);
- `rds_template="alpaca"` or `"chat"` render the prompt with sftpick's templates instead.
Not the heap of `get_top_optimized.py` (a global ranking by the best target), another
algorithm. Vectors are cached per record in `workdir_` (`rds-<config>/`), keyed by content and
by the model, revision, text, pooling and max_length: a killed run redoes at most a chunk.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import ArrayLike

from ..embeddings import cached_vectors
from ..errors import DataError
from ..examples import Example
from ..models import DEFAULT_LM, check_dtype, model_revision, resolve_device, resolve_dtype
from ..options import option
from ..templates import render_prompt
from . import register
from .target import TargetedSelector

RDS_TEMPLATES = ("tulu", "alpaca", "chat")
TARGET_ORDERS = ("shuffled", "file")
DUPLICATES = ("skip", "forfeit")
POOLING = "position-weighted mean of the last hidden state, w_t = t / sum(t) over real tokens"
CHUNK = 2048  # records embedded (and cached) at a time: a killed run loses at most one chunk


@register
@dataclass(kw_only=True, eq=False)
class RDS(TargetedSelector):
    name = "rds"

    model: str = option(DEFAULT_LM, "rds: the base LM whose hidden states embed candidates and targets: embedded "
                                    "name, hub id, local folder or .gguf file.")
    device: str = option("auto", "rds: where the LM runs: auto | cpu | cuda | cuda:N.")
    dtype: str = option("auto", "rds: auto (fp32 on CPU, bf16 on CUDA, the code's) | float32 | bfloat16 | float16.")
    token_budget: int | None = option(None, "rds: padded tokens per forward batch (default: 1024 CPU, 16384 CUDA).",
                                      ge=1)
    max_length: int = option(2048, "rds: tokens of each record and target read (the code's 2048).", ge=2)
    rds_template: str = option("tulu", "rds: text embedded: tulu (the code's <|user|>/<|assistant|> format) | "
                                       "alpaca | chat (the tokenizer's chat template).", choices=RDS_TEMPLATES)
    target_order: str = option("shuffled", "rds: order the targets take turns in: shuffled (seeded, as the code "
                                           "shuffles its query sets) | file.", choices=TARGET_ORDERS)
    seed: int = option(42, "rds: seed of the targets' shuffled order (the code's 42).")
    rds_duplicates: str = option("skip", "rds: a target whose best candidate is taken: skip (takes its next best) "
                                         "| forfeit (loses the turn, the code's).", choices=DUPLICATES)

    def check(self) -> None:
        super().check()  # reads the targets: a bad --target fails here, before any model loads
        check_dtype(self.dtype)
        resolve_device(self.device)

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions in pick order; `stats_` holds the targets, similarity figures and passes."""
        records = getattr(self, "records_", None)
        if records is None or len(records) != table.num_rows:
            raise DataError("rds embeds the records: give the data with the scores (select(..., data=FILE))")
        lm = functools.cache(self._load)
        candidates = self._embed(records, "candidate", lm)
        targets = self._embed(self.targets_, "target", lm)
        similarity = _unit(candidates) @ _unit(targets).T  # [n, m] cosine, float64
        columns, order, subtasks = self._turns(similarity)
        chosen, passes = _round_robin(columns, budget, order, skip_taken=self.rds_duplicates == "skip")
        best = similarity.max(axis=1)
        self.stats_ = {
            "targets": len(self.targets_), "subtasks": subtasks, "passes": passes,
            "target_order": f"shuffled (seed {self.seed})" if self.target_order == "shuffled" else "file",
            "duplicates": self.rds_duplicates, "model": self.model, "revision": model_revision(self.model),
            "similarity": {"min": float(similarity.min()), "mean": float(similarity.mean()),
                           "max": float(similarity.max()), "best_target_mean": float(best.mean()),
                           "chosen_best_target_mean": float(best[chosen].mean()) if len(chosen) else None,
                           "chosen_best_target_min": float(best[chosen].min()) if len(chosen) else None}}
        self.notes_ = [] if len(chosen) >= budget else [
            f"rds: selected {len(chosen)} of {budget}: the pool holds no more candidates"]
        return chosen

    def _turns(self, similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """The columns that take turns, their order, and the subtasks' sizes (None: one task)."""
        if self.target_subtask is None:
            m = similarity.shape[1]
            order = np.random.default_rng(self.seed).permutation(m) if self.target_order == "shuffled" else np.arange(m)
            return similarity, order, None
        labels = self.subtasks_
        names = sorted({str(e.record.get(self.target_subtask)) for e in self.targets_})
        columns = np.stack([similarity[:, labels == k].max(axis=1) for k in range(len(names))], axis=1)
        return columns, np.arange(len(names)), {name: int((labels == k).sum()) for k, name in enumerate(names)}

    def _load(self):
        from ..models import load_causal_lm

        return load_causal_lm(self.model, device=self.device, dtype=self.dtype)

    def vector_config(self, side: str) -> dict:
        """What makes a vector (the cache key): known without loading the model."""
        return {"featurizer": "rds", "model": self.model, "revision": model_revision(self.model),
                "model_dtype": resolve_dtype(self.dtype, self.device), "side": side,
                "text": f"{self.rds_template}: prompt + response + EOS", "pooling": POOLING,
                "max_length": self.max_length, "dtype": "float32"}

    def _embed(self, examples: list[Example], side: str, lm) -> np.ndarray:
        config = self.vector_config(side)
        workdir = getattr(self, "workdir_", None)

        def compute(fresh: list[Example]) -> np.ndarray:
            loaded = lm()
            ids = token_ids(fresh, loaded.tokenizer, self.rds_template, self.max_length, side)
            budget = self.token_budget or (16384 if loaded.device.startswith("cuda") else 1024)
            return embed_ids(loaded.model, ids, pad_id=pad_id(loaded.tokenizer), token_budget=budget)

        parts = [cached_vectors(examples[i:i + CHUNK], config, workdir, compute=compute, store_name="rds")
                 for i in range(0, len(examples), CHUNK)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------- text and tokens

def tulu_conversation(messages: list[dict[str, str]], eos: str) -> str:
    """The code's training text (`encode_with_messages_format`): every turn stripped, EOS after
    each assistant turn, the whole stripped."""
    text = "".join(f"<|{m['role']}|>\n" + m["content"].strip() + (eos if m["role"] == "assistant" else "") + "\n"
                   for m in messages)
    return text.strip()


def tulu_prompt(messages: list[dict[str, str]], eos: str) -> str:
    """The code's query prompt (`create_prompt_with_tulu_chat_format`, add_bos=False): context
    turns as they are (assistant turns stripped, with EOS), then `<|assistant|>\\n`."""
    text = "".join(f"<|{m['role']}|>\n" + (m["content"].strip() + eos if m["role"] == "assistant" else m["content"])
                   + "\n" for m in messages)
    return text + "<|assistant|>\n"


def token_ids(examples: list[Example], tokenizer, template: str, max_length: int, side: str) -> list[list[int]]:
    """The tokens RDS+ embeds: a candidate's whole text in one call; a target's prompt (with
    special tokens) then its response + EOS (without), as `construct_test_sample`. Cut at
    `max_length`."""
    eos = tokenizer.eos_token or ""
    if template == "tulu":
        prompts = [tulu_prompt(e.context, eos) for e in examples]
        wholes = [tulu_conversation(e.messages, eos) for e in examples]
    else:
        prompts = [render_prompt(e, template, tokenizer) for e in examples]
        wholes = [p + e.response + eos for p, e in zip(prompts, examples)]
    if side == "candidate":
        return [row[:max_length] for row in tokenizer(wholes)["input_ids"]] if wholes else []
    if not prompts:
        return []
    heads = tokenizer(prompts)["input_ids"]
    tails = tokenizer([e.response + eos for e in examples], add_special_tokens=False)["input_ids"]
    return [(head + tail)[:max_length] for head, tail in zip(heads, tails)]


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def hidden_batches(model, ids: list[list[int]], *, pad_id: int, token_budget: int) -> Iterator[tuple]:
    """(positions, last hidden state [b, t, h] after the final norm, mask [b, t]) for each
    right-padded micro-batch of `ids` of at most `token_budget` padded tokens, no gradients."""
    import torch

    from ..spans import micro_batches

    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in micro_batches(np.array([len(row) for row in ids]), token_budget):
            width = max(len(ids[i]) for i in batch)
            tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                tokens[r, :len(ids[i])] = torch.tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            tokens, mask = tokens.to(device), mask.to(device)
            yield batch, model.base_model(input_ids=tokens, attention_mask=mask).last_hidden_state, mask


def embed_ids(model, ids: list[list[int]], *, pad_id: int, token_budget: int) -> np.ndarray:
    """RDS+ vectors [len(ids), h] float32 (not normalised) of token id lists, batched."""
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    for batch, hidden, mask in hidden_batches(model, ids, pad_id=pad_id, token_budget=token_budget):
        out[batch] = position_weighted_mean(hidden.float().cpu().numpy(), mask.cpu().numpy())
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# ---------------------------------------------------------------- pooling and round-robin (pure numpy)

def position_weighted_mean(hidden: ArrayLike, mask: ArrayLike) -> np.ndarray:
    """RDS+ text embedding [b, h] from an LM's last hidden states `hidden` [b, t, h] and the
    attention `mask` [b, t] (1 = real token), arXiv 2503.01807;
    hamishivi/automated-instruction-selection `minimal_multitask/compute_influence_cosinesim.py`
    (`--pooling weighted_mean`):

        e = Σ_i w_i h_i,   w_i = p_i / Σ_j p_j,   p_i = 1, 2, …, L over the L real tokens

    i.e. the SGPT position-weighted mean the paper names, later tokens weighing more. The
    code weights all positions of the tensor (t / Σ t, 1-based) with no mask, which is right
    only at batch size 1, its setting; here positions count real tokens only, from the first
    one, so a left- or right-padded row pools exactly as the row alone. The result is at
    least float32 (the code's bf16 states times its fp32 weights give fp32).
    """
    hidden, mask = _check_pooling(hidden, mask)
    dtype = np.result_type(hidden, np.float32)
    positions = np.cumsum(mask, axis=1) * mask
    weights = (positions / positions.sum(axis=1, keepdims=True)).astype(dtype)
    return np.einsum("bt,bth->bh", weights, hidden.astype(dtype, copy=False))


def round_robin(similarity: ArrayLike, budget: int, target_order: np.ndarray | None = None, *,
                skip_taken: bool = True) -> np.ndarray:
    """RDS+ round-robin selection, arXiv 2503.01807; hamishivi/automated-instruction-selection
    `minimal_multitask/get_top_influences.py --selection_method max`: min(budget, n) distinct
    candidate positions, in pick order, from `similarity` [n_candidates, n_targets].

    Pass after pass, each target in `target_order` (default 0..n_targets−1; the code shuffles
    its query set with seed 42, give that permutation here) takes its most similar candidate
    not yet taken (ties to the lower index, as the code's stable sort); stops at the budget.

    Duplicates: with `skip_taken=True` (default, the intended "each query adds its nearest
    remaining point") a target passes over candidates other targets took, so every turn adds
    a record. `skip_taken=False` is the code's behaviour: the target pops its best remaining
    candidate and, if another target already took it, loses the turn. The code finishes the
    pass and truncates to the budget, the same records as stopping at it; it raises
    IndexError when a list runs out, which cannot happen here before every candidate is taken.

    Multi-task RDS+ (`get_top_aggregated_influences.py`) is this function on one column per
    task, each the max over that task's queries, with `skip_taken=False` to match its code.
    Not the heap of `get_top_optimized.py`, which ranks by the max over queries.
    """
    return _round_robin(similarity, budget, target_order, skip_taken=skip_taken)[0]


def _round_robin(similarity: ArrayLike, budget: int, target_order: np.ndarray | None = None, *,
                 skip_taken: bool = True) -> tuple[np.ndarray, int]:
    """`round_robin` and the number of passes it took (a pass cut short by the budget counts)."""
    similarity, budget, order = _check_round_robin(similarity, budget, target_order)
    n = len(similarity)
    budget = min(budget, n)
    if budget == 0:
        return np.zeros(0, dtype=np.int64), 0
    start = 2 * (budget // len(order) + 1) + 16
    rankings = [_Ranking(similarity[:, target], start) for target in order]
    taken = np.zeros(n, dtype=bool)
    chosen: list[int] = []
    passes = 0
    while len(chosen) < budget:
        passes += 1
        for ranking in rankings:
            candidate = ranking.pop_untaken(taken) if skip_taken else ranking.pop()
            if candidate is None or taken[candidate]:
                continue
            taken[candidate] = True
            chosen.append(candidate)
            if len(chosen) == budget:
                break
    return np.asarray(chosen, dtype=np.int64), passes


class _Ranking:
    """One target's candidates, best first (ties to the lower index). Sorted a prefix at a time,
    the prefix doubled when used up, so a target that takes few candidates never sorts all n."""

    def __init__(self, scores: np.ndarray, start: int):
        self.scores, self.cursor = scores, 0
        self.order = _best_first(scores, start)

    def pop(self) -> int | None:
        if self.cursor == len(self.order):
            if len(self.order) == len(self.scores):
                return None
            self.order = _best_first(self.scores, 2 * len(self.order))
        self.cursor += 1
        return int(self.order[self.cursor - 1])

    def pop_untaken(self, taken: np.ndarray) -> int | None:
        candidate = self.pop()
        while candidate is not None and taken[candidate]:
            candidate = self.pop()
        return candidate


def _best_first(scores: np.ndarray, count: int) -> np.ndarray:
    """The first `count` positions by (score descending, position ascending)."""
    n = len(scores)
    if count >= n:
        return np.lexsort((np.arange(n), -scores))
    kth = np.partition(-scores, count - 1)[count - 1]
    above = np.flatnonzero(-scores < kth)
    tied = np.flatnonzero(-scores == kth)[:count - len(above)]  # the lower positions among ties
    top = np.concatenate([above, tied])
    return top[np.lexsort((top, -scores[top]))]


def _check_pooling(hidden, mask):
    hidden, mask = np.asarray(hidden), np.asarray(mask)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"rds: hidden {hidden.shape} and mask {mask.shape} should be [b, t, h] and [b, t]")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("rds: mask should hold 0 (padding) and 1 (real token) only")
    empty = np.flatnonzero(mask.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"rds: rows {empty.tolist()} have no real token to pool")
    return hidden, mask.astype(np.int64)


def _check_round_robin(similarity, budget, target_order):
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2:
        raise ValueError(f"rds: similarity should be [n_candidates, n_targets], got shape {similarity.shape}")
    if np.isnan(similarity).any():
        raise ValueError("rds: similarity contains NaN")
    if budget < 0:
        raise ValueError(f"rds: budget={budget} should be >= 0")
    n_targets = similarity.shape[1]
    order = np.arange(n_targets) if target_order is None else np.asarray(target_order)
    if sorted(order.tolist()) != list(range(n_targets)):
        raise ValueError(f"rds: target_order should be a permutation of 0..{n_targets - 1}")
    if n_targets == 0 and budget > 0 and len(similarity):
        raise ValueError("rds: similarity has no target column to select by")
    return similarity, int(budget), order
