"""Instruction perplexity: how surprising the instruction (the rendered prompt, with no
response) is to the scoring LM. Cherry LLM's "pre-experienced" model is tuned on records
sampled by it (Li et al., "From Quantity to Quality: Boosting LLM Performance with
Self-Guided Data Selection for Instruction Tuning", arXiv 2308.12032; `data_analysis.py
--mod pre` computes it as the mean loss over the prompt's tokens, Alpaca prompt, 512 tokens),
and the `pre_experience` strategy keeps a middle band of it in every cluster.
"""
from __future__ import annotations

import numpy as np

from ..examples import Example
from ..models import DEFAULT_LM, check_lm_options, load_causal_lm, model_revision, resolve_dtype
from ..perplexity import Span, SpanLoss
from ..templates import TEMPLATES, render_prompt
from . import REJECT, register


@register
class InstructionPerplexity:
    name = "ppl_ins"
    columns = ("ppl_ins",)
    runs_a_model = True  # worth one process per core / GPU (engines/pool.py)

    def __init__(self, model: str = DEFAULT_LM, *, template: str | None = None, max_length: int = 512,
                 device: str = "auto", dtype: str = "auto", token_budget: int | None = None,
                 trust_remote_code: bool = False):
        self.model = model
        self.template = template
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.token_budget = token_budget
        self.trust_remote_code = trust_remote_code

    def check(self) -> None:
        """Every option's value, before any model loads."""
        if (self.template or "alpaca") not in TEMPLATES:
            raise ValueError(f"template={self.template!r} is not one of {', '.join(TEMPLATES)}")
        check_lm_options(max_length=self.max_length, token_budget=self.token_budget, dtype=self.dtype,
                         device=self.device)

    def setup(self) -> None:
        self.check()
        self.template_ = self.template or "alpaca"  # Cherry's pre-experience analysis renders Alpaca's prompt
        self.lm_ = load_causal_lm(self.model, device=self.device, dtype=self.dtype,
                                  trust_remote_code=self.trust_remote_code)
        tokenizer = self.lm_.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
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
