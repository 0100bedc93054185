"""DEITA's score-first diversity filter ("Repr Filter"): walk the records from the best score
down and keep one only if its cosine similarity to every record kept so far is below `tau`
(0.9 in the paper), until the budget is met. Liu et al., "What Makes Good Data for
Alignment? A Comprehensive Study of Automatic Data Selection in Instruction Tuning"
(DEITA), arXiv 2312.15685. The paper embeds with its own model; here the cached sentence
embeddings are used, normalised so that the inner product is the cosine.

Candidates are taken a block at a time: one matrix product against the kept set, then the
few that pass are checked against each other in score order, so the result equals the
one-at-a-time walk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..options import option
from . import Selector, register
from .ranking import score_order, unit_rows

_BLOCK = 1024


@register
@dataclass(kw_only=True, eq=False)
class Deita(Selector):
    name = "deita"
    needs_embeddings = True

    tau: float = option(0.9, "deita: keep a record only if its cosine similarity to every kept one is below this.",
                        ge=-1, le=1, what="a cosine similarity")

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions kept, in score order."""
        vectors = unit_rows(vectors)
        order = score_order(table, self.by, self.ascending)
        chosen, examined = deita_filter(vectors, order, budget, self.tau)
        self.stats_ = {"tau": self.tau, "examined": examined, "too_similar": examined - len(chosen)}
        self.notes_ = [] if len(chosen) >= budget else [
            f"deita: selected {len(chosen)} of {budget}: the other {examined - len(chosen)} records "
            f"have cosine similarity >= tau={self.tau:g} to one kept (a higher --tau keeps more)"]
        return chosen


def deita_filter(x: np.ndarray, order: np.ndarray, budget: int, tau: float) -> tuple[np.ndarray, int]:
    """Positions kept walking `order`, and how many were examined. No input validation:
    `x` is float32 [n, d] with unit rows."""
    kept = np.empty((min(budget, len(order)), x.shape[1]), dtype=np.float32)
    chosen: list[int] = []
    start = examined = 0
    while start < len(order) and len(chosen) < budget:
        block = order[start:start + _BLOCK]
        cand = x[block]
        ok = (cand @ kept[:len(chosen)].T).max(axis=1, initial=-np.inf) < tau
        passed = np.flatnonzero(ok)
        within = cand[passed] @ cand[passed].T
        taken: list[int] = []
        for i in range(len(passed)):
            if len(chosen) + len(taken) == budget:
                break
            if not taken or within[i, taken].max() < tau:
                taken.append(i)
        if len(chosen) + len(taken) == budget and taken:
            examined = start + int(passed[taken[-1]]) + 1
        else:
            examined = start + len(block)
        kept[len(chosen):len(chosen) + len(taken)] = cand[passed[taken]]
        chosen.extend(int(p) for p in block[passed[taken]])
        start += len(block)
    return np.asarray(chosen, dtype=np.int64), examined
