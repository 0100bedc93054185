"""Whole-dataset assessment (Instruction Mining): indicator means and spread, and the rule's
estimate of the eval loss a model tuned on the data would reach, so two datasets can be
compared before any training.

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290). An indicator that was not computed (e.g. no reward model given)
is reported as missing with the reason, never as 0, and then the rule has no estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .curation import COLUMNS as CURATION_COLUMNS
from .examples import FORMATS
from .options import option
from .provenance import HASH
from .scorers.rule import DEFAULT_RULE, load_rule
from .scoring import score

NOT_INDICATORS = {"row", "id", HASH, "rule", *CURATION_COLUMNS}


def default_indicators(options: dict) -> list[str]:
    """len, mtld and knn_k always; reward when a reward model is given."""
    names = ["len", "mtld", f"knn_{options.get('knn_k') or 6}"]
    return names + (["reward"] if options.get("reward_model") else [])


@dataclass(kw_only=True)
class AssessSettings:
    """`sftpick assess` (the indicator scorers' options apart)."""

    data: Path = option(help="Input records: .json (array), .jsonl or .parquet.", argument=True)
    json_path: Path | None = option(None, "Also write the report here.", flags=("--json",))
    indicators: list[str] = option([], "Extra scorers, comma-separated (e.g. ppl).")
    fmt: str | None = option(None, "alpaca | sharegpt | openai (default: detect).", flags=("--format",),
                             choices=FORMATS)
    progress: bool = option(True, "Show progress.")


def assess(data: str | Path, *, indicators: list[str] | None = None, rule_file: str | Path | None = None,
           cache_dir: str | Path | None = None, progress: bool = True, **options) -> dict:
    """Score `data` with the indicator scorers and summarise it; a plain dict (JSON-ready).
    `options` go to `score` (fmt, and the scorers' options: reward_model, embedder, …)."""
    rule = load_rule(rule_file)
    names = list(dict.fromkeys((indicators or []) + default_indicators(options)))
    options.setdefault("dedup", "none")  # the dataset as it is, repeats included
    result = score(data, scorers=names, cache_dir=cache_dir, progress=progress, **options)
    columns = {name: result.table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
               for name in result.table.column_names if name not in NOT_INDICATORS}
    summary = {name: describe(values) for name, values in columns.items()}
    for column in rule.columns:
        summary.setdefault(column, {"missing": True, "reason": _why_missing(column, options)})
    return {"input": str(result.dataset.path), "counts": result.counts, "indicators": summary,
            "rule": estimate(rule, summary, str(rule_file or DEFAULT_RULE)), "scorers": result.scorers}


def describe(values: np.ndarray) -> dict:
    """Mean and spread over the rows that have a value; NaNs are counted, not averaged."""
    present = values[~np.isnan(values)]
    if not len(present):
        return {"missing": True, "reason": f"no record has a value ({len(values)} NaN)"}
    p10, median, p90 = np.percentile(present, [10, 50, 90])
    return {"n": int(len(present)), "nan": int(len(values) - len(present)), "mean": float(present.mean()),
            "std": float(present.std(ddof=1)) if len(present) > 1 else 0.0, "min": float(present.min()),
            "p10": float(p10), "median": float(median), "p90": float(p90), "max": float(present.max())}


def estimate(rule, summary: dict, source: str) -> dict:
    """The rule applied to the indicator means (lower is better), or why it cannot be."""
    missing = [f"{t.indicator} ({t.column})" for t in rule.terms if summary[t.column].get("missing")]
    report = {"file": source, "name": rule.name, "target": rule.target, **rule.to_dict()}
    if missing:
        return {**report, "estimate": None, "missing": missing}
    means = {t.column: np.array([summary[t.column]["mean"]]) for t in rule.terms}
    return {**report, "estimate": float(rule.apply(means)[0]), "missing": []}


def _why_missing(column: str, options: dict) -> str:
    if column == "reward" and not options.get("reward_model"):
        return "no reward model given (--reward-model)"
    return f"column {column!r} was not scored (add its scorer to --indicators)"
