"""Selectors choose rows of a score table. A selector is a class whose `__init__` stores
its options, whose `check()` validates them before any work, and whose
`select(table, budget, embeddings=None) -> np.ndarray` returns the chosen positions in the
table, in pick order, deterministic for a given seed. A selector with
`needs_embeddings = True` gets one vector per table row. After `select` it may leave
`stats_` (figures for the manifest) and `notes_` (why it returned fewer than asked). Budgets
are resolved to a count before a selector sees them (`parse_budget`). Modules register
themselves in `SELECTORS`."""
from __future__ import annotations

import math
import re
from typing import Protocol

import numpy as np
import pyarrow as pa

SELECTORS: dict[str, type] = {}


class Selector(Protocol):
    name: str

    def check(self) -> None: ...

    def select(self, table: pa.Table, budget: int, embeddings: np.ndarray | None = None) -> np.ndarray: ...


def register(cls: type) -> type:
    SELECTORS[cls.name] = cls
    return cls


def make_selector(name: str, **options) -> Selector:
    if name not in SELECTORS:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(SELECTORS))}")
    return SELECTORS[name](**options)


def parse_budget(budget: int | float | str, n: int) -> int:
    """`2000` is a count; `0.05` or `"5%"` a fraction of `n` (rounded up, at least 1 when n > 0)."""
    text = str(budget).strip()
    if re.fullmatch(r"\d+", text):
        count = int(text)
    elif re.fullmatch(r"\d*\.?\d+%", text):
        count = _fraction(float(text[:-1]) / 100, n, text)
    elif re.fullmatch(r"\d*\.\d+", text):
        count = _fraction(float(text), n, text)
    else:
        raise ValueError(f"budget={budget!r} should be a count (2000), a fraction (0.05) or a percentage (5%)")
    if count < 1:
        raise ValueError(f"budget={budget!r} should select at least one record")
    return min(count, n)


def _fraction(value: float, n: int, text: str) -> int:
    if not 0 < value <= 1:
        raise ValueError(f"budget={text!r} is a fraction outside (0, 1]")
    return max(1, math.ceil(value * n)) if n else 0


from . import topk  # noqa: E402,F401  (modules register themselves)
from . import clusters, deita, facility, kcenter, lift, pre_experience  # noqa: E402,F401
