"""Small statistics shared by the scorers, the report and the evaluation summary. Imports
nothing from the package."""
from __future__ import annotations

from collections import Counter


def dominant_value(counts: Counter, *, share: float, at_least: int) -> tuple[float, int, int] | None:
    """(value, its count, the total) when one value holds at least `share` of `at_least` or
    more values (ties: the smaller value), else None: a rating that collapsed to one value."""
    total = sum(counts.values())
    if total < at_least or not counts:
        return None
    value, n = max(counts.items(), key=lambda item: (item[1], -item[0]))
    return (value, n, total) if n >= share * total else None
