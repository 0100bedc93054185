"""Prompt templates for perplexity scoring. IFD moves with the template (Cherry LLM scores
Alpaca-templated text, Superfiltering plain text), so it is part of every scorer's config."""
from __future__ import annotations

from .errors import not_one_of
from .examples import Example

TEMPLATES = ("none", "alpaca", "chat")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:")


def render_prompt(example: Example, template: str, tokenizer=None) -> str:
    """The text the response follows: the whole context, rendered by `template`."""
    if template == "none":
        return example.instruction + "\n" + (example.input + "\n" if example.input else "")
    if template == "alpaca":
        pattern = ALPACA_WITH_INPUT if example.input else ALPACA_NO_INPUT
        return pattern.format(instruction=example.instruction, input=example.input)
    if template == "chat":
        return tokenizer.apply_chat_template(example.context, tokenize=False, add_generation_prompt=True)
    raise not_one_of("template", template, TEMPLATES)
