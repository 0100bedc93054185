"""Held-out loss: the mean cross-entropy of the response tokens of an eval set, weighted by
tokens (every response token counts once, so a long response weighs more than a short
one), computed with the same batched kernel as IFD (`perplexity.SpanLoss`) so scoring and
evaluation share their numerics. Instruction Mining (arXiv 2307.06290) fits its rule to
this quantity."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from ..perplexity import SpanLoss
from .data import Encoded


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: str
    sha256: str  # of the file
    encoded: list[Encoded]
    content_hashes: list[str]  # of the records kept, for the overlap check and the cache key
    locations: list[str]  # "line 7" / "row 6" of each record kept, for messages
    n_records: int  # in the file
    rejects: dict[str, int]  # reason -> count (read rejects and records with no response token left)

    @property
    def n_tokens(self) -> int:
        return sum(e.n_response for e in self.encoded)


def eval_loss(model, encoded: list[Encoded], *, pad_id: int, token_budget: int) -> float:
    """Token-weighted mean response cross-entropy of `encoded` under `model` (no input validation)."""
    model.eval()
    device = next(model.parameters()).device
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    with autocast:
        means = SpanLoss(model, pad_id=pad_id)([e.span for e in encoded], token_budget)
    counts = np.array([e.n_response for e in encoded], dtype=np.float64)
    return float((means * counts).sum() / counts.sum())


def eval_losses(model, sets: list[EvalSet], *, pad_id: int, token_budget: int) -> dict[str, float]:
    return {s.name: eval_loss(model, s.encoded, pad_id=pad_id, token_budget=token_budget) for s in sets}
