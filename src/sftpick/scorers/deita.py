"""DEITA's complexity and quality scores, read from a causal LM's next-token distribution.

Liu et al., "What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data
Selection in Instruction Tuning" (DEITA, ICLR 2024, arXiv 2312.15685). DEITA fine-tunes
LLaMA-1-13B to answer a rating prompt with a score 1..6 (`hkust-nlp/deita-complexity-scorer`,
`hkust-nlp/deita-quality-scorer`). The score is not the generated digit but its expectation:
the logits of the tokens "1".."6" as the next token after the prompt, softmaxed over those
six alone, ``score = sum_i p_i * i`` (a value in [1, 6]).

- ``deita_complexity`` rates the user turn alone; ``deita_quality`` the user turn and its
  response; ``deita`` runs both models and adds DEITA's ranking key, the "evol score"
  ``deita_score = sum over turns of complexity_t * quality_t``.
- Multi-turn, as DEITA's score pipeline does it: every (user turn, its answer) pair is rated
  on its own, without the earlier turns, and a record's score is the sum over its turns
  (DEITA's filter sums the per-turn scores, or their products, to rank). `deita_turns` is the
  number of pairs, so a mean is `deita_complexity / deita_turns`.
- DEITA never truncates a prompt; a record with a turn whose prompt exceeds `max_length`
  tokens (default 2048, the scorers' training length) is rejected instead of cut.

Measured against DEITA's own scorer code (docs/methods/deita.md): equal to about 1e-5 with
the default fp32 batches (padding changes the kernels' summation order) and to 1e-6 with
`token_budget=1`, one record per forward as DEITA runs; the rankings are identical.

Any causal LM runs (the embedded SmolLM2 is a stand-in that keeps it offline); the rating
tokens are the tokenizer's single-token digits, which for LLaMA's tokenizer are DEITA's
hard-coded ids 29896..29953.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError
from ..examples import Example
from ..models import LMScorer, LoadedLM, load_causal_lm, model_option, model_revision, resolve_dtype
from ..options import option
from . import REJECT, register

# DEITA's prompts (src/deita/selection/scorer/llama_scorer.py), spaces and all.
COMPLEXITY_PROMPT = ("You are a helpful assistant. Please identify the complexity score of the following user "
                     "query. \n##Query: {instruction}  \n##Complexity: ")
QUALITY_PROMPT = ("You are a helpful assistant. Please identify the quality score of the Response "
                  "corresponding to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} "
                  "\n##Quality: ")
RATINGS = np.arange(1, 7, dtype=np.float64)
DEITA_MAX_LENGTH = 2048


def turns(example: Example) -> list[tuple[str, str]]:
    """(user turn, the assistant turn answering it) pairs; other roles (system, tool) and a
    user turn left unanswered are skipped."""
    pairs, question = [], None
    for message in example.messages:
        if message["role"] == "user":
            question = message["content"]
        elif message["role"] == "assistant" and question is not None:
            pairs.append((question, message["content"]))
            question = None
    return pairs


def expected_rating(logits: np.ndarray) -> np.ndarray:
    """[n, 6] logits of "1".."6" -> [n] expected rating (softmax over the six)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    return (p / p.sum(axis=1, keepdims=True)) @ RATINGS


def rating_token_ids(tokenizer, name: str) -> list[int]:
    """Token ids of "1".."6"; each digit must be one token of the vocabulary."""
    ids = []
    for digit in map(str, range(1, 7)):
        token_id = tokenizer.convert_tokens_to_ids(digit)
        if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.decode([token_id]).strip() != digit:
            raise OptionError(f"model {name!r}: the digit {digit!r} is not a single token of its vocabulary, "
                              "so DEITA's rating cannot be read from the next-token logits")
        ids.append(token_id)
    return ids


def _model_option(scorer: str, example: str) -> str:
    return model_option(what=f"Causal LM for `{scorer}` and `deita`, e.g. {example} (default: the embedded "
                             "stand-in)")


class RatingLM:
    """One scorer model and one prompt: per-turn expected ratings of a batch of examples."""

    def __init__(self, lm: LoadedLM, prompt: str, *, max_length: int, token_budget: int | None):
        self.lm = lm
        self.prompt = prompt
        self.max_length = max_length
        tokenizer = self.lm.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        from ..perplexity import NextTokenLogits  # torch: loaded with the model, not with the CLI

        self.logits = NextTokenLogits(self.lm.model, pad_id=pad or 0)
        self.token_ids = rating_token_ids(tokenizer, lm.name)
        self.token_budget = token_budget or (16384 if self.lm.device.startswith("cuda") else 1024)

    def encode(self, batch: list[Example]) -> list[list[list[int]]]:
        """Per example, the token ids of each turn's prompt (special tokens as the tokenizer
        adds them, as DEITA's `tokenizer.encode` does)."""
        texts = [[self.prompt.format(instruction=q, output=a) for q, a in turns(e)] for e in batch]
        flat_texts = [t for per_example in texts for t in per_example]
        flat = self.lm.tokenizer(flat_texts)["input_ids"] if flat_texts else []
        out, start = [], 0
        for per_example in texts:
            out.append(flat[start: start + len(per_example)])
            start += len(per_example)
        return out

    def rate(self, batch: list[Example]) -> tuple[list[np.ndarray], list[str | None]]:
        """Per example, its turns' ratings (empty where rejected) and the reject reason."""
        encoded = self.encode(batch)
        reasons = [self._reject_reason(prompts) for prompts in encoded]
        ok = [i for i, reason in enumerate(reasons) if reason is None]
        sequences = [ids for i in ok for ids in encoded[i]]
        ratings = expected_rating(self.logits(sequences, self.token_ids, self.token_budget)) if sequences else []
        per_example, start = [np.empty(0) for _ in batch], 0
        for i in ok:
            per_example[i] = np.asarray(ratings[start: start + len(encoded[i])], dtype=np.float64)
            start += len(encoded[i])
        return per_example, reasons

    def cost(self, examples: list[Example]) -> np.ndarray:
        return np.array([sum(map(len, prompts)) for prompts in self.encode(examples)])

    def _reject_reason(self, prompts: list[list[int]]) -> str | None:
        if not prompts:
            return "no user turn to rate: DEITA rates (user turn, assistant answer) pairs"
        for t, ids in enumerate(prompts, 1):
            if len(ids) > self.max_length:
                return (f"DEITA prompt too long: turn {t} has {len(ids)} tokens, over max_length="
                        f"{self.max_length} (DEITA scores whole prompts, so it is not truncated)")
        return None


@dataclass(kw_only=True, eq=False)
class _DeitaBase(LMScorer):
    """Options, checks and config shared by the three scorers (subclasses name the models)."""

    runs_a_model = True  # worth one process per core / GPU (engines/pool.py)

    max_length: int = option(DEITA_MAX_LENGTH, "Longest rating prompt, in tokens (DEITA never cuts one: a longer "
                                               "record is rejected).", ge=1)

    def _rating_lm(self, model: str, prompt: str, loaded: LoadedLM | None = None) -> RatingLM:
        """A rater for `prompt`; `loaded` is reused when it is `model` already."""
        if loaded is None or loaded.name != model:
            loaded = load_causal_lm(model, device=self.device, dtype=self.dtype,
                                    trust_remote_code=self.trust_remote_code)
        return RatingLM(loaded, prompt, max_length=self.max_length, token_budget=self.token_budget)

    def _model_config(self, key: str, model: str) -> dict:
        """Known before the model loads (the rating tokens' ids follow from model and revision)."""
        return {key: model, f"{key}_revision": model_revision(model),
                f"{key}_dtype": resolve_dtype(self.dtype, self.device)}


@dataclass(kw_only=True, eq=False)
class _OneModel(_DeitaBase):
    """deita_complexity / deita_quality: one model, one prompt, one column."""

    prompt = ""  # set by each subclass
    model_option = ""  # the name of its model option

    def setup(self) -> None:
        self.check()
        self.rater_ = self._rating_lm(getattr(self, self.model_option), self.prompt)
        self.token_budget_ = self.rater_.token_budget

    def config(self) -> dict:
        return {"scorer": self.name, **self._model_config("model", getattr(self, self.model_option)),
                "prompt": self.prompt,
                "max_length": self.max_length, "multi_turn": "sum over (user, assistant) turns"}

    def cost(self, examples: list[Example]) -> np.ndarray:
        return self.rater_.cost(examples)

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        ratings, reasons = self.rater_.rate(batch)
        return {self.name: _sums(ratings, reasons), "deita_turns": _turn_counts(ratings, reasons),
                REJECT: np.array(reasons, dtype=object)}


@register
@dataclass(kw_only=True, eq=False)
class DeitaComplexity(_OneModel):
    name = "deita_complexity"
    columns = ("deita_complexity", "deita_turns")
    prompt = COMPLEXITY_PROMPT
    model_option = "deita_complexity_model"

    deita_complexity_model: str = _model_option("deita_complexity", "hkust-nlp/deita-complexity-scorer")


@register
@dataclass(kw_only=True, eq=False)
class DeitaQuality(_OneModel):
    name = "deita_quality"
    columns = ("deita_quality", "deita_turns")
    prompt = QUALITY_PROMPT
    model_option = "deita_quality_model"

    deita_quality_model: str = _model_option("deita_quality", "hkust-nlp/deita-quality-scorer")


@register
@dataclass(kw_only=True, eq=False)
class Deita(_DeitaBase):
    """Both scorers and DEITA's ranking key, the evol score sum_t complexity_t * quality_t
    (src/deita/selection/filter/combined_filter.py with its default sort key
    "complexity_scores,quality_scores"): rank with `--by deita_score --strategy deita`."""

    name = "deita"
    columns = ("deita_complexity", "deita_quality", "deita_score", "deita_turns")

    deita_complexity_model: str = _model_option("deita_complexity", "hkust-nlp/deita-complexity-scorer")
    deita_quality_model: str = _model_option("deita_quality", "hkust-nlp/deita-quality-scorer")

    def setup(self) -> None:
        self.check()
        self.complexity_ = self._rating_lm(self.deita_complexity_model, COMPLEXITY_PROMPT)
        self.quality_ = self._rating_lm(self.deita_quality_model, QUALITY_PROMPT, self.complexity_.lm)
        self.token_budget_ = self.complexity_.token_budget

    def config(self) -> dict:
        return {"scorer": self.name, **self._model_config("complexity_model", self.deita_complexity_model),
                **self._model_config("quality_model", self.deita_quality_model), "complexity_prompt": COMPLEXITY_PROMPT,
                "quality_prompt": QUALITY_PROMPT, "max_length": self.max_length,
                "multi_turn": "sum over (user, assistant) turns"}

    def cost(self, examples: list[Example]) -> np.ndarray:
        return self.complexity_.cost(examples) + self.quality_.cost(examples)

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        complexity, complexity_reasons = self.complexity_.rate(batch)
        quality, quality_reasons = self.quality_.rate(batch)
        reasons = [c or q for c, q in zip(complexity_reasons, quality_reasons)]
        evol = [c * q if len(c) and len(q) else np.empty(0) for c, q in zip(complexity, quality)]
        return {"deita_complexity": _sums(complexity, reasons), "deita_quality": _sums(quality, reasons),
                "deita_score": _sums(evol, reasons), "deita_turns": _turn_counts(complexity, reasons),
                REJECT: np.array(reasons, dtype=object)}


def _sums(per_turn: list[np.ndarray], reasons: list[str | None]) -> np.ndarray:
    return np.array([np.nan if reason else float(values.sum()) for values, reason in zip(per_turn, reasons)])


def _turn_counts(per_turn: list[np.ndarray], reasons: list[str | None]) -> np.ndarray:
    return np.array([0 if reason else len(values) for values, reason in zip(per_turn, reasons)], dtype=np.int64)
