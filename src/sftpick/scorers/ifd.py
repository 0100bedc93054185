"""Instruction-Following Difficulty, IFD = PPL(response | instruction) / PPL(response).

Li et al., "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data
Selection for Instruction Tuning" (Cherry LLM, NAACL 2024, arXiv 2308.12032), and
Li et al., "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning"
(ACL 2024, arXiv 2402.00530), which computes it with a small weak model such as GPT-2.

Two variants, as in the two reference repositories:

- ``superfiltering`` (default): prompt from `template` (default "none":
  ``instruction\\n[input\\n]``); `whole = prompt + response`, truncated to `max_length`
  tokens; `loss_cond` is the mean cross-entropy of the tokens of `whole` after the first
  len(tokenize(prompt)); `loss_direct` that of the response tokenized alone (truncated to
  `max_length - n_prompt_tokens + 1`), every token but the first scored;
  ``ifd = exp(loss_cond) / exp(loss_direct)``.
- ``cherry``: Alpaca template by default; the direct pass scores the response behind a
  masked ``### Response:`` prefix (truncated to `max_length - n_prompt_tokens + 4`);
  ``ifd = loss_cond / loss_direct``, the ratio of mean losses that Cherry's released
  ``data_by_IFD.py`` computes (its paper's Eq. 5), not of perplexities.

IFD >= 1 means the instruction does not make the response easier to predict.

`packing=True` scores each micro-batch's sequences in one row without padding
(`perplexity.SpanLoss`): for a GPU with flash-attention; on a CPU the padded batches of
sorted lengths are faster.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from ..examples import Example
from ..models import LMScorer, load_causal_lm, model_option, model_revision, resolve_dtype
from ..options import option
from ..spans import Span
from ..templates import TEMPLATES, render_prompt
from . import REJECT, register

VARIANTS = ("superfiltering", "cherry")
CHERRY_DIRECT_PREFIX = "### Response:"


@dataclass
class _Encoded:
    cond: Span | None
    direct: Span | None
    n_prompt: int
    reject: str | None = None


@register
@dataclass(kw_only=True, eq=False)
class IFDScorer(LMScorer):
    name = "ifd"
    runs_a_model = True  # worth one process per core / GPU (engines/pool.py)
    columns = ("ifd", "loss_cond", "loss_direct", "ppl_cond", "ppl_direct",
               "n_prompt_tokens", "n_response_tokens")

    model: str = model_option()
    variant: str = option("superfiltering", "IFD variant: superfiltering (exp of the loss difference) | cherry "
                                            "(the loss ratio, Cherry LLM's).", choices=VARIANTS)
    template: str | None = option(None, "Prompt template: none | alpaca | chat (default: by variant).",
                                  choices=TEMPLATES)
    max_length: int = option(1024, "Longest sequence scored, in tokens.", ge=2)
    packing: bool = option(False, "Each batch's sequences in one row without padding (for CUDA with "
                                  "flash-attention; slower on CPU, see benchmarks/README.md).")

    def setup(self) -> None:
        self.check()
        self.template_ = self._template()
        self.lm_ = load_causal_lm(self.model, device=self.device, dtype=self.dtype,
                                  trust_remote_code=self.trust_remote_code)
        tokenizer = self.lm_.tokenizer
        if self.template_ == "chat" and not getattr(tokenizer, "chat_template", None):
            raise OptionError(f"template='chat' needs a chat template, and {self.model!r}'s tokenizer has none")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        from ..perplexity import SpanLoss  # torch: loaded with the model, not with the CLI

        self.loss_ = SpanLoss(self.lm_.model, pad_id=pad or 0, packed=self.packing)
        self.token_budget_ = self.token_budget or (16384 if self.lm_.device.startswith("cuda") else 1024)
        self.prefix_ids_ = tokenizer(CHERRY_DIRECT_PREFIX)["input_ids"]

    def _template(self) -> str:
        return self.template or ("alpaca" if self.variant == "cherry" else "none")

    def config(self) -> dict:
        return {"scorer": self.name, "model": self.model, "model_revision": model_revision(self.model),
                "variant": self.variant, "template": self._template(), "max_length": self.max_length,
                "dtype": resolve_dtype(self.dtype, self.device),
                **({"packing": True} if self.packing else {})}  # padded keys as before packing existed

    # ------------------------------------------------------------------ scoring
    def cost(self, examples: list[Example]) -> np.ndarray:
        """Tokens both passes will run, for sorting and batching by length."""
        return np.array([_span_tokens(e) for e in self._encode(examples)])

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        encoded = self._encode(batch)
        ok = [i for i, e in enumerate(encoded) if e.reject is None]
        spans = [encoded[i].cond for i in ok] + [encoded[i].direct for i in ok]
        losses = self.loss_(spans, self.token_budget_)
        loss_cond = np.full(len(batch), np.nan)
        loss_direct = np.full(len(batch), np.nan)
        loss_cond[ok], loss_direct[ok] = losses[: len(ok)], losses[len(ok):]
        ifd = loss_cond / loss_direct if self.variant == "cherry" else np.exp(loss_cond - loss_direct)
        return {
            "ifd": ifd, "loss_cond": loss_cond, "loss_direct": loss_direct,
            "ppl_cond": np.exp(loss_cond), "ppl_direct": np.exp(loss_direct),
            "n_prompt_tokens": np.array([e.n_prompt for e in encoded]),
            "n_response_tokens": np.array([len(e.cond.ids) - e.n_prompt if e.cond else 0 for e in encoded]),
            REJECT: np.array([e.reject for e in encoded], dtype=object),
        }

    def _encode(self, batch: list[Example]) -> list[_Encoded]:
        tokenizer = self.lm_.tokenizer
        prompts = [render_prompt(e, self.template_, tokenizer) for e in batch]
        cherry = self.variant == "cherry"
        directs = [(CHERRY_DIRECT_PREFIX if cherry else "") + e.response for e in batch]
        prompt_ids = tokenizer(prompts)["input_ids"]
        whole_ids = tokenizer([p + e.response for p, e in zip(prompts, batch)])["input_ids"]
        direct_ids = tokenizer(directs)["input_ids"]
        direct_first = len(self.prefix_ids_) if cherry else 1
        slack = 4 if cherry else 1
        return [self._encode_one(p, w, d, direct_first, slack)
                for p, w, d in zip(prompt_ids, whole_ids, direct_ids)]

    def _encode_one(self, prompt: list[int], whole: list[int], direct: list[int],
                    direct_first: int, slack: int) -> _Encoded:
        n_prompt = len(prompt)
        whole = whole[: self.max_length]
        direct = direct[: max(self.max_length - n_prompt + slack, 0)]
        if n_prompt >= len(whole):
            reason = (f"prompt fills max_length={self.max_length} ({n_prompt} prompt tokens), "
                      "no response token left to score")
            return _Encoded(None, None, n_prompt, reason)
        if len(direct) <= direct_first:
            return _Encoded(None, None, n_prompt, f"response too short to score alone ({len(direct)} token(s))")
        return _Encoded(Span(whole, n_prompt), Span(direct, direct_first), n_prompt)


def _span_tokens(encoded: _Encoded) -> int:
    return len(encoded.cond.ids) + len(encoded.direct.ids) if encoded.reject is None else 0
