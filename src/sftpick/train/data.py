"""Examples to training sequences: the prompt rendered exactly as scoring renders it
(`templates.render_prompt`), the response after it, an EOS token at the end (so the model
learns to stop, as Alpaca's and Cherry LLM's training code does), and the loss on the
response tokens only. Multi-turn records train on their last assistant turn given all
earlier turns, as IFD scores them.

Tokenisation matches the IFD scorer: the prompt is tokenised alone to find where the
response starts, `prompt + response` is tokenised once, and the sequence is cut at
`max_length`. A record whose prompt fills `max_length` has no response token left to
train on; it is rejected with that reason.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..examples import Example
from ..spans import Span
from ..templates import render_prompt

IGNORE = -100  # label of a token the loss skips (the prompt, padding)


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    n_prompt: int  # the first n_prompt tokens are context: no loss on them
    n_response_full: int  # response tokens before truncation (Long Is More ranks by this)

    @property
    def n_response(self) -> int:
        return len(self.ids) - self.n_prompt

    @property
    def span(self) -> Span:
        return Span(self.ids, self.n_prompt)

    def labels(self) -> list[int]:
        return [IGNORE] * self.n_prompt + self.ids[self.n_prompt:]


def encode(examples: list[Example], tokenizer, template: str, max_length: int
           ) -> tuple[list[Encoded | None], list[str | None]]:
    """One Encoded (or None) and one reject reason (or None) per example, in order."""
    prompts = [render_prompt(e, template, tokenizer) for e in examples]
    prompt_ids = tokenizer(prompts)["input_ids"] if prompts else []
    whole_ids = tokenizer([p + e.response for p, e in zip(prompts, examples)])["input_ids"] if prompts else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded, reasons = [], []
    for prompt, whole in zip(prompt_ids, whole_ids):
        n_prompt, full = len(prompt), whole + eos
        ids = full[:max_length]
        if n_prompt >= len(ids):
            encoded.append(None)
            reasons.append(f"prompt fills max_length={max_length} ({n_prompt} prompt tokens), "
                           "no response token left to train on")
            continue
        encoded.append(Encoded(ids, n_prompt, len(full) - n_prompt))
        reasons.append(None)
    return encoded, reasons


def collate(batch: list[dict], pad_id: int) -> dict:
    """Right-pad a batch of {input_ids, labels}; padding gets no loss and no attention."""
    import torch

    width = max(len(item["input_ids"]) for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
