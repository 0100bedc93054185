"""Instruction Mining's linear quality rule, and fitting a new one.

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290) estimate the eval loss of a model tuned on data D, without
tuning, from indicator means: log L = 1.0694 - 0.1498·Rew + 8.257e-5·Len - 0.9350·Knn6
(lower is better). The coefficients and the indicator -> score column mapping live in a
plain JSON file (`data/instruction_mining_rule.json` by default; `rule_file` for your
own). `fit_rule` refits them by ordinary least squares (statsmodels) from experiments:
one row per tuned dataset, its indicator means and the eval loss reached.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from ..options import Component, option
from . import register

DEFAULT_RULE = Path(__file__).resolve().parent.parent / "data" / "instruction_mining_rule.json"


@dataclass(frozen=True)
class Term:
    indicator: str
    column: str
    coefficient: float


@dataclass(frozen=True)
class Rule:
    intercept: float
    terms: tuple[Term, ...]
    name: str = "rule"
    source: str = ""
    target: str = "log eval loss (lower is better)"

    @property
    def columns(self) -> list[str]:
        return [t.column for t in self.terms]

    def apply(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Rule value per row (NaN where an indicator is NaN); raises when a column is absent."""
        missing = [c for c in self.columns if c not in columns]
        if missing:
            raise OptionError(f"rule {self.name!r} needs the score columns {', '.join(missing)}")
        return self.intercept + sum(t.coefficient * np.asarray(columns[t.column], dtype=np.float64)
                                    for t in self.terms)

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "target": self.target,
                "intercept": self.intercept, "terms": [asdict(t) for t in self.terms]}


def load_rule(path: str | Path | None = None) -> Rule:
    """Read a rule file: {"intercept": x, "terms": [{"indicator", "column", "coefficient"}, …]}."""
    path = Path(path) if path else DEFAULT_RULE
    try:
        data = json.loads(path.read_text())
        terms = tuple(Term(str(t["indicator"]), str(t["column"]), float(t["coefficient"])) for t in data["terms"])
        return Rule(float(data["intercept"]), terms, data.get("name", path.stem), data.get("source", ""),
                    data.get("target", Rule.target))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise OptionError(f"rule file {path}: {error!r}; expected JSON with 'intercept' and 'terms' "
                          "[{indicator, column, coefficient}]") from None


@register
@dataclass(kw_only=True, eq=False)
class RuleScorer(Component):
    """Derived scorer: computed from other scorers' columns once they are all in."""

    name = "rule"
    columns = ("rule",)
    derived = True

    rule_file: str | None = option(None, "Rule file (JSON) for `rule` (default: Instruction Mining's fitted rule).")

    def check(self) -> None:
        """The rule file is small: reading it is the check."""
        super().check()
        self.rule_ = load_rule(self.rule_file)

    def setup(self) -> None:
        self.check()

    def config(self) -> dict:
        rule = getattr(self, "rule_", None) or load_rule(self.rule_file)
        return {"scorer": self.name, "rule_file": str(self.rule_file or DEFAULT_RULE), **rule.to_dict()}

    def check_inputs(self, available: list[str]) -> None:
        missing = [c for c in self.rule_.columns if c not in available]
        if missing:
            raise OptionError(f"scorer 'rule' needs the columns {', '.join(missing)}; add the scorers that "
                              f"make them to --scorers (e.g. len, knn_6, reward with --reward-model)")

    def derive(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"rule": self.rule_.apply(columns)}


@dataclass
class Fit:
    rule: Rule
    r_squared: float
    adj_r_squared: float
    n_experiments: int
    p_values: dict[str, float]
    std_errors: dict[str, float]


def fit_rule(experiments, target: str = "loss", *, indicators: list[str] | None = None,
             log_target: bool = True) -> Fit:
    """Least squares of (log) `target` on the indicator columns of `experiments` (a CSV path
    or a {column: values} mapping); every other numeric column is an indicator by default."""
    import statsmodels.api as sm

    data = _read_experiments(experiments)
    if target not in data:
        raise DataError(f"target={target!r} is not a column of the experiments; columns: {', '.join(data)}")
    indicators = indicators or [c for c in data if c != target]
    missing = [c for c in indicators if c not in data]
    if missing:
        raise DataError(f"indicators {', '.join(missing)} are not columns of the experiments")
    if len(data[target]) <= len(indicators) + 1:
        raise DataError(f"{len(data[target])} experiments cannot fit {len(indicators)} coefficients and an "
                        f"intercept; need at least {len(indicators) + 2}")
    y = np.log(data[target]) if log_target else data[target]
    x = sm.add_constant(np.column_stack([data[c] for c in indicators]), has_constant="add")
    result = sm.OLS(y, x).fit()
    names = ["intercept", *indicators]
    rule = Rule(float(result.params[0]), tuple(Term(c, c, float(b)) for c, b in zip(indicators, result.params[1:])),
                name="fitted", target=f"{'log ' if log_target else ''}{target}")
    return Fit(rule, float(result.rsquared), float(result.rsquared_adj), len(y),
               dict(zip(names, map(float, result.pvalues))), dict(zip(names, map(float, result.bse))))


def _read_experiments(experiments) -> dict[str, np.ndarray]:
    if not isinstance(experiments, (str, Path)):
        return {k: np.asarray(v, dtype=np.float64) for k, v in experiments.items()}
    import pyarrow.csv as csv

    table = csv.read_csv(experiments)
    numeric = {}
    for name in table.column_names:
        try:
            numeric[name] = table.column(name).to_numpy().astype(np.float64)
        except (TypeError, ValueError):
            continue  # a label column such as the dataset's name
    return numeric
