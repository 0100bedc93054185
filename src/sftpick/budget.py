"""Budgets: how many records to keep, as a count (`2000`), a fraction (`0.05`) or a percentage
(`"5%"`) of the records there are. Imports nothing from the package but the errors."""
from __future__ import annotations

import math
import re

from .errors import OptionError


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
        raise OptionError(f"budget={budget!r} should be a count (2000), a fraction (0.05) or a percentage (5%)")
    if count < 1:
        raise OptionError(f"budget={budget!r} should select at least one record")
    return min(count, n)


def _fraction(value: float, n: int, text: str) -> int:
    if not 0 < value <= 1:
        raise OptionError(f"budget={text!r} is a fraction outside (0, 1]")
    return max(1, math.ceil(value * n)) if n else 0
