"""Top-k by one score column: the ranking used by Cherry LLM and Superfiltering (highest IFD
among those below 1) and by Instruction Mining's rule (lowest predicted loss)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import Selector, register


@register
@dataclass(kw_only=True, eq=False)
class TopK(Selector):
    name = "topk"
    needs_ranking = True  # the other strategies can choose by coverage alone

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """Positions of the `budget` best rows; ties broken by `row`, NaN never chosen."""
        values = table.column(self.by).to_numpy(zero_copy_only=False).astype(np.float64)
        rows = table.column("row").to_numpy()
        valid = np.flatnonzero(~np.isnan(values))
        key = values[valid] if self.ascending else -values[valid]
        order = valid[np.lexsort((rows[valid], key))]
        return order[:budget]
