"""Token spans and the micro-batches they are grouped into: plain data and numpy, so that the
scorers, embedders and gradient features that batch sequences import no model library to
describe their work (perplexity.py runs the model over them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """Score tokens `ids[first:]`, each given all tokens before it (`first` >= 1)."""

    ids: list[int]
    first: int


def micro_batches(lengths: np.ndarray, token_budget: int, *, packed: bool = False) -> list[np.ndarray]:
    """Group indices, in ascending length, so that each group's tokens stay within the budget:
    rows × longest row (right-padded), or the sum of the lengths (`packed`); a longer
    sequence goes alone."""
    order = np.argsort(lengths, kind="stable")
    batches, current, total = [], [], 0
    for index in order:
        length = int(lengths[index])
        tokens = total + length if packed else length * (len(current) + 1)  # ascending: the newest is the longest
        if current and tokens > token_budget:
            batches.append(np.array(current))
            current, total = [], 0
        current.append(index)
        total += length
    if current:
        batches.append(np.array(current))
    return batches
