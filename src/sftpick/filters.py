"""Filters applied before a strategy chooses: `--where "judge>=4.5"` on any score column, and
the IFD band. Each filter is one reason in the manifest and the report, counted over the
records still in after the filters before it, so the counts add up to what was dropped.

- AlpaGasus (arXiv 2307.08701) keeps the records its judge rates >= 4.5: `--where "judge>=4.5"`.
- Superfiltering (arXiv 2402.00530) drops IFD >= 1 (the instruction does not help) before
  ranking (`max_ifd`, the default when ranking by `ifd`); its diversity script
  (`code_diversity_fla/do_fla.py`) can instead keep a band `ifd_lower < IFD < ifd_upper`
  (0.9 and 1.0 by default): `min_ifd` is the band's lower bound.

A record whose value is missing (NaN) fails every filter: nothing is kept on a value that
was never measured.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .errors import OptionError

OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
             ">": operator.gt, "<": operator.lt}
_CONDITION = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")


@dataclass(frozen=True)
class Condition:
    """Keep a record when `column op value` holds; `reason` names what the dropped ones failed."""

    column: str
    op: str
    value: float
    reason: str = ""

    def keeps(self, table: pa.Table) -> np.ndarray:
        values = table.column(self.column).to_numpy(zero_copy_only=False).astype(np.float64)
        with np.errstate(invalid="ignore"):
            return OPERATORS[self.op](values, self.value) & ~np.isnan(values)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


def parse_where(expression: str) -> Condition:
    """`"judge>=4.5"` -> Condition("judge", ">=", 4.5); a ValueError naming the expression otherwise."""
    match = _CONDITION.fullmatch(expression)
    if not match:
        raise OptionError(f"where={expression!r} should be COLUMN OP NUMBER with OP one of "
                          f"{' '.join(OPERATORS)} (e.g. \"judge>=4.5\")")
    column, op, text = match.groups()
    value = float(text)
    return Condition(column, op, value, f"not {column} {op} {value:g} (--where)")


def ifd_band(max_ifd: float | None, min_ifd: float | None) -> list[Condition]:
    """Superfiltering's filters on IFD: below `max_ifd`, above `min_ifd` (both strict, as in its code)."""
    band = []
    if max_ifd is not None:
        band.append(Condition("ifd", "<", max_ifd, f"ifd >= {max_ifd:g} (instruction does not help)"))
    if min_ifd is not None:
        band.append(Condition("ifd", ">", min_ifd, f"ifd <= {min_ifd:g} (below --min-ifd)"))
    return band


def check_columns(conditions: list[Condition], columns: list[str]) -> None:
    missing = [str(c) for c in conditions if c.column not in columns]
    if missing:
        raise OptionError(f"filter {', '.join(missing)} names no column of the scores; columns: {', '.join(columns)}")


def apply(table: pa.Table, conditions: list[Condition],
          keep: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Positions that pass every condition (among those `keep` holds, default all), and per
    reason how many it dropped (no input validation)."""
    keep = np.ones(table.num_rows, dtype=bool) if keep is None else keep.copy()
    dropped = {}
    for condition in conditions:
        fails = keep & ~condition.keeps(table)
        dropped[condition.reason] = dropped.get(condition.reason, 0) + int(fails.sum())
        keep &= ~fails
    return np.flatnonzero(keep), dropped
