"""Instruction perplexity: how surprising the instruction (the rendered prompt, with no
response) is to the scoring LM. Cherry LLM's "pre-experienced" model is tuned on records
sampled by it (Li et al., "From Quantity to Quality: Boosting LLM Performance with
Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032; `data_analysis.py
--mod pre` computes it as the mean loss over the prompt's tokens, Alpaca prompt, 512 tokens),
and the `pre_experience` strategy keeps a middle band of it in every cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..examples import Example
from ..models import LMScorer, load_causal_lm, model_option, model_revision, resolve_dtype
from ..options import option
from ..spans import Span
from ..templates import TEMPLATES, render_prompt
from . import REJECT, register


@register
@dataclass(kw_only=True, eq=False)
class InstructionPerplexity(LMScorer):
    name = "ppl_ins"
    columns = ("ppl_ins",)
    runs_a_model = True  # worth one process per core / GPU (engines/pool.py)

    model: str = model_option()
    template: str | None = option(None, "Prompt template: none | alpaca | chat (default: alpaca, Cherry LLM's).",
                                  choices=TEMPLATES)
    max_length: int = option(512, "Longest instruction scored, in tokens.", ge=2)

    def setup(self) -> None:
        self.check()
        self.template_ = self.template or "alpaca"  # Cherry's pre-experience analysis renders Alpaca's prompt
        self.lm_ = load_causal_lm(self.model, device=self.device, dtype=self.dtype,
                                  trust_remote_code=self.trust_remote_code)
        tokenizer = self.lm_.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        from ..perplexity import SpanLoss  # torch: loaded with the model, not with the CLI

        self.loss_ = SpanLoss(self.lm_.model, pad_id=pad or 0)
        self.token_budget_ = self.token_budget or (16384 if self.lm_.device.startswith("cuda") else 1024)

    def config(self) -> dict:
        return {"scorer": self.name, "model": self.model, "model_revision": model_revision(self.model),
                "template": self.template or "alpaca", "max_length": self.max_length,
                "dtype": resolve_dtype(self.dtype, self.device)}

    def cost(self, examples: list[Example]) -> np.ndarray:
        return np.array([len(ids) for ids in self._ids(examples)])

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        ids = self._ids(batch)
        ok = [i for i, row in enumerate(ids) if len(row) >= 2]
        losses = np.full(len(batch), np.nan)
        losses[ok] = self.loss_([Span(ids[i], 1) for i in ok], self.token_budget_)
        reasons = [None if len(row) >= 2 else "prompt of fewer than 2 tokens: no token to score" for row in ids]
        return {"ppl_ins": np.exp(losses), REJECT: np.array(reasons, dtype=object)}

    def _ids(self, batch: list[Example]) -> list[list[int]]:
        tokenizer = self.lm_.tokenizer
        prompts = [render_prompt(e, self.template_, tokenizer) for e in batch]
        return [row[: self.max_length] for row in tokenizer(prompts)["input_ids"]]
