"""MTLD, the Measure of Textual Lexical Diversity, of each response.

McCarthy & Jarvis, "MTLD, vocd-D, and HD-D: A validation study of sophisticated approaches
to lexical diversity assessment" (Behavior Research Methods 42, 2010); used as an indicator
by Cao et al., "Instruction Mining" (arXiv 2307.06290).

Words are lower-cased runs of letters, digits and apostrophes (punctuation is not a word).
Reading forward, the type-token ratio (TTR) of the current factor is tracked word by word;
when it falls to the threshold (0.72) one full factor is counted and a new one starts. The
words left at the end count as a partial factor, (1 - TTR) / (1 - 0.72). MTLD = words /
factors; the score is the mean of the forward and the backward pass. A text whose words
never repeat has no factor at all and MTLD is undefined: NaN, as is an empty text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..examples import Example
from ..options import Component, option
from . import register

THRESHOLD = 0.72
_WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w.strip("'")]


def mtld_pass(tokens: list[str], threshold: float = THRESHOLD) -> float:
    """Words per factor in one reading direction (no input validation)."""
    factors, types, count = 0.0, set(), 0
    for token in tokens:
        count += 1
        types.add(token)
        if len(types) / count <= threshold:
            factors, types, count = factors + 1, set(), 0
    if count:
        factors += (1 - len(types) / count) / (1 - threshold)
    return len(tokens) / factors if factors > 0 else float("nan")


def mtld(text: str, threshold: float = THRESHOLD) -> float:
    tokens = words(text)
    return (mtld_pass(tokens, threshold) + mtld_pass(tokens[::-1], threshold)) / 2


@register
@dataclass(kw_only=True, eq=False)
class MTLDScorer(Component):
    name = "mtld"
    columns = ("mtld",)

    mtld_threshold: float = option(THRESHOLD, "MTLD's type-token ratio threshold (McCarthy & Jarvis: 0.72).",
                                   gt=0, lt=1)

    def setup(self) -> None:
        self.check()

    def config(self) -> dict:
        return {"scorer": self.name, "threshold": self.mtld_threshold, "words": _WORD.pattern}

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        return {"mtld": np.array([mtld(e.response, self.mtld_threshold) for e in batch], dtype=np.float64)}
