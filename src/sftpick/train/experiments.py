"""Instruction Mining's experiments: many training sets drawn from a pool, each fine-tuned
and evaluated, so the quality rule can be fitted to real eval losses (`sftpick rule fit`).

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290) sample datasets of varied quality from a mix of source datasets,
fine-tune a model on each, and regress the log eval loss on the datasets' indicator means.
Here every POOL file is a source, and dataset i is drawn with `numpy.random.default_rng([seed, i])`
(so it does not change when more datasets are asked for):

1. size ~ uniform integer in [min_size, max_size] (at most the usable records of all sources);
2. mixture weights ~ Dirichlet(1, …, 1) over the sources (uniform over all mixtures);
3. per-source counts ~ Multinomial(size, weights); a count above its source's size is cut
   to it and the excess is given to the sources with room, again by multinomial draws;
4. from each source, that many records without replacement (kept in file order).

Only records that can be trained on (`data.encode` at the configured `max_length`) are drawn.
Each drawn dataset is written to `RUNS/dNNN.jsonl` (the original records), its indicator
means come from `assess.assess` (the same code as `sftpick assess`), and its fine-tune from
the evaluation loop (`loop.run_arm`, resumable). One CSV row per dataset:
`dataset, mixture, <indicator means>, loss`; text columns are labels, which `rule fit` skips.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..writers import atomic_write, sibling
from .arms import Arm, Source, file_names

PRIMARY_COLUMN = {"ppl": "ppl_cond"}  # scorer name -> the column that is its indicator


@dataclass(frozen=True)
class Draw:
    name: str  # d000, d001, …
    size: int
    counts: dict[str, int]  # source name -> records drawn from it
    rows: dict[str, np.ndarray]  # source name -> positions among its usable records, ascending

    @property
    def mixture(self) -> str:
        return "+".join(f"{name}:{n}" for name, n in self.counts.items())


def draw_datasets(capacities: dict[str, int], n: int, *, min_size: int, max_size: int, seed: int) -> list[Draw]:
    """`n` datasets drawn from sources of the given usable sizes (no input validation)."""
    names, caps = list(capacities), np.array(list(capacities.values()))
    draws = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        size = int(min(rng.integers(min_size, max_size + 1), caps.sum()))
        weights = rng.dirichlet(np.ones(len(caps)))
        counts = _fit_capacity(rng.multinomial(size, weights), caps, weights, rng)
        rows = {name: np.sort(rng.choice(cap, count, replace=False)) for name, cap, count in zip(names, caps, counts)}
        draws.append(Draw(f"d{i:03d}", size, dict(zip(names, map(int, counts))), rows))
    return draws


def _fit_capacity(counts: np.ndarray, caps: np.ndarray, weights: np.ndarray, rng) -> np.ndarray:
    """Cut counts to their sources' sizes; hand the excess to sources with room, by weight."""
    counts = counts.copy()
    while excess := int(np.maximum(counts - caps, 0).sum()):
        counts = np.minimum(counts, caps)
        share = np.where(caps > counts, weights, 0.0)
        if share.sum() <= 0:  # the sources with room had (numerically) zero weight
            share = (caps > counts).astype(float)
        counts = counts + rng.multinomial(excess, share / share.sum())
    return counts


def indicator_columns(indicators: list[str]) -> list[str]:
    return [PRIMARY_COLUMN.get(name, name) for name in indicators]


def run_experiments(lm, pools: list[str | Path], eval_path: str | Path, output: Path, config, *, datasets: int,
                    min_size: int, max_size: int, seed: int, indicators: list[str], assess_options: dict,
                    progress: bool = True, fmt: str | None = None) -> list[dict]:
    """Draw, assess, fine-tune and evaluate `datasets` training sets; (re)write the CSV at
    `output` after each one. Returns the rows."""
    from ..assess import assess
    from .loop import base_result, load_eval_sets, load_source, run_arm

    runs = sibling(output, ".runs")
    sources = dict(zip(file_names([str(p) for p in pools]), [load_source(p, lm, config, fmt) for p in pools]))
    formats = {name: s.format for name, s in sources.items()}
    if len(set(formats.values())) > 1:
        raise DataError(f"the pools are in different formats ({formats}); a drawn dataset mixes their records "
                        "in one file, so convert them to one format first")
    sets = load_eval_sets([eval_path], lm, config)
    token_budget = 16384 if lm.device.startswith("cuda") else 1024
    base = base_result(lm, sets, config, runs, token_budget)
    draws = draw_datasets({k: len(s.examples) for k, s in sources.items()}, datasets, min_size=min_size,
                          max_size=max_size, seed=seed)
    _write_manifest(runs, lm, config, sources, sets, base, draws, seed, min_size, max_size, indicators)
    rows, columns = [], indicator_columns(indicators)
    for i, draw in enumerate(draws, start=1):
        path = _write_draw(runs / f"{draw.name}.jsonl", draw, sources)
        report = assess(path, indicators=indicators, cache_dir=runs / "cache", progress=progress, **assess_options)
        source = load_source(path, lm, config, fmt)
        arm = Arm(draw.name, "file", config.seed, source, np.arange(len(source.examples)))
        result = run_arm(arm, lm, config, sets, runs, token_budget=token_budget, progress=progress,
                         save_model=False, label=f"{draw.name} ({i}/{len(draws)})")
        rows.append({"dataset": draw.name, "mixture": draw.mixture,
                     **{c: _mean(report, c) for c in columns}, "loss": result["eval_loss"][sets[0].name]})
        atomic_write(runs / f"{draw.name}.json", json.dumps(
            {"draw": {"name": draw.name, "size": draw.size, "counts": draw.counts, "seed": [seed, i - 1]},
             "indicators": report["indicators"], "rule": report["rule"], "fine_tune": result}, indent=2, default=str))
        atomic_write(output, _csv(rows))
    return rows


def _mean(report: dict, column: str) -> float:
    stats = report["indicators"].get(column)
    if stats is None or stats.get("missing"):
        return float("nan")
    return stats["mean"]


def _write_draw(path: Path, draw: Draw, sources: dict[str, Source]) -> Path:
    if not path.exists():  # same name, same seed: the same records
        lines = [json.dumps(sources[name].examples[r].record, ensure_ascii=False)
                 for name, rows in draw.rows.items() for r in rows]
        atomic_write(path, "".join(line + "\n" for line in lines))
    return path


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _write_manifest(runs, lm, config, sources, sets, base, draws, seed, min_size, max_size, indicators) -> None:
    from .loop import file_entry, training_header

    manifest = {**training_header(lm, config), "base": base, "indicators": indicators,
                "draws": {"datasets": len(draws), "seed": seed, "min_size": min_size, "max_size": max_size,
                          "method": "size ~ U{min_size..max_size}; weights ~ Dirichlet(1); counts ~ Multinomial; "
                                    "records without replacement; rng = numpy default_rng([seed, i])"},
                "sources": {name: file_entry(s, len(s.examples)) for name, s in sources.items()},
                "eval_set": file_entry(sets[0], len(sets[0].encoded))}
    atomic_write(runs / "manifest.json", json.dumps(manifest, indent=2))
