"""Reward-model score of (instruction, response), Instruction Mining's `Rew` indicator.

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290) scored each pair with OpenAssistant's
`reward-model-deberta-v3-large-v2`. Any Hugging Face sequence-classification model with a
single output works: the pair is encoded as the tokenizer's text pair (context, response),
truncated to the model's length, and the one logit is the reward (higher = better).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..embeddings import example_text
from ..errors import OptionError
from ..examples import Example
from ..models import (ModelNotFoundError, _quiet_transformers, device_option, hub_kwargs, model_revision,
                      resolve_device, trust_remote_code_option)
from ..options import Component, option
from . import register


@register
@dataclass(kw_only=True, eq=False)
class RewardScorer(Component):
    name = "reward"
    columns = ("reward",)
    runs_a_model = True  # worth one process per core / GPU (engines/pool.py)

    reward_model: str | None = option(None, "Reward model for `reward`: HF sequence classification, one output.")
    device: str = device_option()
    reward_batch_size: int = option(8, "Records per batch of the reward model.", ge=1)
    reward_max_length: int | None = option(None, "Longest (context, response) pair, in tokens (default: the "
                                                 "model's own limit).", ge=1)
    trust_remote_code: bool = trust_remote_code_option()

    def check(self) -> None:
        super().check()
        if not self.reward_model:
            raise OptionError("scorer 'reward' needs a reward model: --reward-model NAME_OR_PATH "
                              "(e.g. OpenAssistant/reward-model-deberta-v3-large-v2)")
        resolve_device(self.device)

    def setup(self) -> None:
        self.check()
        self.model_, self.tokenizer_ = _load(self.reward_model, self.device, self.trust_remote_code)
        if self.model_.config.num_labels != 1:
            raise OptionError(f"reward_model={self.reward_model!r} has num_labels={self.model_.config.num_labels}; "
                              "expected 1 (one scalar reward)")
        self.max_length_ = self._max_length(self.model_.config, self.tokenizer_)

    def _max_length(self, model_config, tokenizer) -> int:
        limits = [self.reward_max_length, getattr(model_config, "max_position_embeddings", None),
                  tokenizer.model_max_length if tokenizer.model_max_length < 1e6 else None]
        return min(limit for limit in limits if limit) if any(limits) else 512

    def config(self) -> dict:
        """Known before the weights load: the length limit comes from the model's config and tokenizer files."""
        if not hasattr(self, "max_length_"):
            self.max_length_ = self._max_length(*_load_config(self.reward_model, self.trust_remote_code))
        return {"scorer": self.name, "reward_model": self.reward_model, "revision": model_revision(self.reward_model),
                "max_length": self.max_length_, "input": "text pair (context, response)"}

    def cost(self, examples: list[Example]) -> np.ndarray:
        return np.array([len(example_text(e, "whole")) for e in examples])

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        rewards = np.full(len(batch), np.nan)
        for start in range(0, len(batch), self.reward_batch_size):
            part = batch[start: start + self.reward_batch_size]
            rewards[start: start + len(part)] = self._rewards(part)
        return {"reward": rewards}

    def _rewards(self, part: list[Example]) -> np.ndarray:
        import torch

        encoded = self.tokenizer_([example_text(e, "instruction") for e in part], [e.response for e in part],
                                  truncation=True, max_length=self.max_length_, padding=True,
                                  return_tensors="pt").to(self.model_.device)
        with torch.inference_mode():
            return self.model_(**encoded).logits[:, 0].float().cpu().numpy()


def _load_config(name: str, trust_remote_code: bool):
    """The model's config and tokenizer, without its weights."""
    from transformers import AutoConfig, AutoTokenizer

    _quiet_transformers()
    hub = hub_kwargs(name, "reward model")
    try:
        return (AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, **hub),
                AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, **hub))
    except OSError as error:
        raise ModelNotFoundError(f"cannot load reward model {name!r}: not a local folder nor a hub id in the "
                                 f"local cache ({str(error).splitlines()[0]})") from None


def _load(name: str, device: str, trust_remote_code: bool):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _quiet_transformers()
    hub = hub_kwargs(name, "reward model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code, **hub)
        model = AutoModelForSequenceClassification.from_pretrained(name, trust_remote_code=trust_remote_code, **hub)
    except OSError as error:
        raise ModelNotFoundError(f"cannot load reward model {name!r}: not a local folder nor a hub id in the "
                                 f"local cache ({str(error).splitlines()[0]})") from None
    model.to(resolve_device(device)).eval()
    return model, tokenizer
