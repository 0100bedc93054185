"""Response length, one of Instruction Mining's indicators (`Len` in the fitted rule).

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290). `len` is the number of tokens of the response under the
scoring model's tokenizer (only the tokenizer is loaded, never the weights; no special
tokens added); `len_chars` its number of characters.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..examples import Example
from ..models import (ModelNotFoundError, cache_dir, hub_kwargs, model_option, model_revision, resolve_lm_source,
                      trust_remote_code_option)
from ..options import Component
from . import register


@register
@dataclass(kw_only=True, eq=False)
class LengthScorer(Component):
    name = "len"
    columns = ("len", "len_chars")

    model: str = model_option(what="Tokenizer of `len` (only the tokenizer loads), a causal LM's")
    trust_remote_code: bool = trust_remote_code_option()

    def setup(self) -> None:
        self.tokenizer_ = load_tokenizer(self.model, trust_remote_code=self.trust_remote_code)

    def config(self) -> dict:
        return {"scorer": self.name, "tokenizer": self.model, "revision": model_revision(self.model)}

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        ids = self.tokenizer_([e.response for e in batch], add_special_tokens=False)["input_ids"]
        return {"len": np.array([len(i) for i in ids], dtype=np.int64),
                "len_chars": np.array([len(e.response) for e in batch], dtype=np.int64)}


def load_tokenizer(name: str, *, trust_remote_code: bool = False):
    """The tokenizer of a causal LM (embedded name, .gguf, local folder or cached hub id); a
    GGUF model already converted by `models.load_causal_lm` is read from its converted
    folder, else the tokenizer alone is read from the GGUF file."""
    from transformers import AutoTokenizer

    source = Path(resolve_lm_source(name))
    try:
        if source.suffix == ".gguf":
            digest = model_revision(name).removeprefix("gguf-sha256:")
            converted = cache_dir() / "converted" / f"{source.stem}-{digest}"
            if (converted / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(str(converted))
            return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        return AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code,
                                             **hub_kwargs(str(source)))
    except OSError as error:
        raise ModelNotFoundError(f"cannot load the tokenizer of {name!r}: {str(error).splitlines()[0]}") from None
