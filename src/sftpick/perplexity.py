"""Batched kernels over many token sequences under one causal LM.

`SpanLoss`, behind IFD: the mean token cross-entropy over a labelled span of each sequence.
`NextTokenLogits`, behind DEITA's scorers: the logits of a few chosen tokens as the next
token after each whole sequence. Sequences are sorted by length and grouped into
right-padded micro-batches under a token budget; the LM head runs only on the positions
that are read, so the (tokens × vocabulary) logits never exist for prompts or padding.

`SpanLoss(packed=True)` instead concatenates the sequences of a micro-batch into one row
without padding, positions restarting at 0 for each: transformers then keeps attention
within each sequence (its masks read packed sequences from `position_ids`; flash-attention
runs them as variable-length batches, without any mask). No padding token is computed, but
where attention needs a mask (sdpa, eager) the mask spans the whole row: that pays on a GPU
with flash-attention, not on a CPU (benchmarks/ifd_throughput.py measures both).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .spans import Span, micro_batches


class SpanLoss:
    """Mean cross-entropy of spans under one causal LM (no input validation); `packed`: the
    spans of a micro-batch in one row without padding."""

    def __init__(self, model, *, pad_id: int, head_chunk: int = 1024, packed: bool = False):
        self.model = model
        self.pad_id = pad_id
        self.head_chunk = head_chunk
        self.packed = packed
        self.device = next(model.parameters()).device
        self.fast = _head_matches_model(model)

    @torch.inference_mode()
    def __call__(self, spans: list[Span], token_budget: int) -> np.ndarray:
        losses = np.full(len(spans), np.nan, dtype=np.float64)
        lengths = np.array([len(span.ids) for span in spans])
        for batch in micro_batches(lengths, token_budget, packed=self.packed):
            losses[batch] = self._batch([spans[i] for i in batch])
        return losses

    def _batch(self, spans: list[Span]) -> np.ndarray:
        inputs, at, owner = (_packed if self.packed else _padded)(spans, self.pad_id)
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        at = tuple(index.to(self.device) for index in at)
        owner = owner.to(self.device)
        targets = inputs["input_ids"][at[0], at[1] + 1]
        if self.fast:
            hidden = self.model.base_model(**inputs, use_cache=False).last_hidden_state
            token_losses = self._head_losses(hidden[at], targets)
        else:
            logits = self.model(**inputs, use_cache=False).logits
            token_losses = F.cross_entropy(logits[at].float(), targets, reduction="none")
        sums = torch.zeros(len(spans), dtype=torch.float64, device=self.device)
        sums.index_add_(0, owner, token_losses.double())
        counts = torch.bincount(owner, minlength=len(spans)).double()
        return (sums / counts).cpu().numpy()

    def _head_losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        head = self.model.get_output_embeddings()
        parts = []
        for start in range(0, len(targets), self.head_chunk):  # bounds the logits' memory
            logits = head(hidden[start: start + self.head_chunk]).float()
            parts.append(F.cross_entropy(logits, targets[start: start + self.head_chunk], reduction="none"))
        return torch.cat(parts)


class NextTokenLogits:
    """Logits of `token_ids` at the position after each sequence's last token, one forward
    per micro-batch (no input validation: sequences are non-empty)."""

    def __init__(self, model, *, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        self.fast = _head_matches_model(model)

    @torch.inference_mode()
    def __call__(self, sequences: list[list[int]], token_ids: list[int], token_budget: int) -> np.ndarray:
        """[len(sequences), len(token_ids)] float64."""
        logits = np.full((len(sequences), len(token_ids)), np.nan, dtype=np.float64)
        lengths = np.array([len(ids) for ids in sequences])
        columns = torch.tensor(token_ids, device=self.device)
        for batch in micro_batches(lengths, token_budget):
            logits[batch] = self._batch([sequences[i] for i in batch], columns)
        return logits

    def _batch(self, sequences: list[list[int]], columns: torch.Tensor) -> np.ndarray:
        width = max(len(ids) for ids in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        for r, sequence in enumerate(sequences):
            ids[r, : len(sequence)] = torch.tensor(sequence)
        ids = ids.to(self.device)
        rows = torch.arange(len(sequences), device=self.device)
        last = torch.tensor([len(s) - 1 for s in sequences], device=self.device)
        # Right padding: under the causal mask no real token sees a pad (as in SpanLoss).
        if self.fast:
            hidden = self.model.base_model(input_ids=ids).last_hidden_state[rows, last]
            logits = self.model.get_output_embeddings()(hidden)
        else:
            logits = self.model(input_ids=ids).logits[rows, last]
        return logits[:, columns].double().cpu().numpy()


def _padded(spans: list[Span], pad_id: int):
    """One right-padded row per span. Under the causal mask no real token sees a pad, so no
    attention mask is needed and attention keeps its fast causal path. Returns the model's
    inputs, where each scored token's predictor sits (row, position) and the span it belongs to."""
    ids = torch.full((len(spans), max(len(span.ids) for span in spans)), pad_id, dtype=torch.long)
    rows, positions = [], []
    for r, span in enumerate(spans):
        ids[r, : len(span.ids)] = torch.tensor(span.ids)
        rows.extend([r] * (len(span.ids) - span.first))
        positions.extend(range(span.first - 1, len(span.ids) - 1))  # predicts positions + 1
    rows_t = torch.tensor(rows)
    return {"input_ids": ids}, (rows_t, torch.tensor(positions)), rows_t


def _packed(spans: list[Span], pad_id: int):
    """Every span in one row, positions restarting at 0 for each (what transformers reads as
    packed sequences: attention stays within each); same returns as `_padded`."""
    ids, position_ids, owner, positions, start = [], [], [], [], 0
    for r, span in enumerate(spans):
        ids.extend(span.ids)
        position_ids.extend(range(len(span.ids)))
        owner.extend([r] * (len(span.ids) - span.first))
        positions.extend(range(start + span.first - 1, start + len(span.ids) - 1))
        start += len(span.ids)
    inputs = {"input_ids": torch.tensor([ids]), "position_ids": torch.tensor([position_ids])}
    return inputs, (torch.zeros(len(positions), dtype=torch.long), torch.tensor(positions)), torch.tensor(owner)


@torch.inference_mode()
def _head_matches_model(model) -> bool:
    """True when lm_head(base_model(x)) reproduces model(x).logits, so the head can run on
    the scored positions alone; models that post-process logits (soft-capping, scaling)
    fall back to the full forward."""
    head = model.get_output_embeddings()
    if head is None or getattr(model.config, "final_logit_softcapping", None):
        return False
    probe = torch.arange(3, 11, device=next(model.parameters()).device).unsqueeze(0)
    try:
        manual = head(model.base_model(input_ids=probe).last_hidden_state).float()
    except (AttributeError, TypeError):
        return False
    full = model(input_ids=probe).logits.float()
    return manual.shape == full.shape and torch.allclose(manual, full, atol=1e-3, rtol=1e-3)
