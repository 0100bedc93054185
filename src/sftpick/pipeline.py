"""`run`: score, select and write every output of one run folder, under its lock, the manifest
last (it vouches for the rest)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .budget import parse_budget
from .curation import CurateSettings
from .curation.stage import check_curation
from .embeddings import embeddings_path
from .engines import EngineSettings
from .filters import check_columns, parse_where
from .io import ORDERS, write_subset
from .options import check_known, declared, option, option_values, settings_from, split_scoped
from .provenance import MANIFEST, new_run_id, stamp, vouch
from .report import build_report
from .scorers import SCORERS
from .scoring import (InputSettings, ScoreResult, ScorerSettings, build_manifest, build_scorers, remove_run_temps,
                      run_config, score)
from .selection import Selection, SelectSettings, build_selector, pool_count, ranking_column, select, with_selection
from .selectors import SELECTORS
from .writers import atomic_write, output_lock, write_parquet, write_rejects


@dataclass(kw_only=True)
class RunSettings(InputSettings, ScorerSettings, CurateSettings, EngineSettings, SelectSettings):
    """`run`'s own settings: input, scorers, engine, selection, and where the outputs go."""

    output_dir: Path = option(help="Folder for all outputs.", flags=("-o", "--output-dir"))
    order: str = option("input", "Order of the subset: input | pick (the strategy's pick order, best first).",
                        choices=ORDERS)


def run(data: str | Path, output_dir: str | Path, budget: int | float | str = "5%",
        **options) -> tuple[ScoreResult, Selection]:
    """Score, select and write `scores.parquet` (with `selected` and the pick `rank`),
    `selected.<ext>` (in input order, or the strategy's pick order with `order="pick"`),
    `rejects.jsonl` and `manifest.json` under `output_dir`, and `report.html` from them.

    `options`: the settings of `RunSettings` (scorers, strategy, by, where, pool, order, engine,
    …), the scorers' options and the strategy's (each given to every component that declares
    it, or to one alone as `**{"ifd.max_length": 512}`). Everything is checked before any
    record is read or model loaded."""
    started = time.perf_counter()
    settings, rest = settings_from(RunSettings, {"data": data, "output_dir": output_dir, "budget": budget,
                                                 **options})
    scorer_options, strategy_options = split_run_options(settings.strategy, rest)
    strategy = SELECTORS.get(settings.strategy)
    settings.scorers = settings.scorers or list(getattr(strategy, "default_scorers", None) or ["ifd"])
    settings.check(device=scorer_options.get("device"))
    built, selector = _check_before_scoring(settings, scorer_options, strategy_options)
    run_id = new_run_id()
    out = settings.output_dir
    with output_lock(out / ".lock"):
        remove_run_temps(out, "", out / "cache")
        vectors_file = embeddings_path(out / "scores.parquet")  # written by kNN, read by the selectors
        scored = score(settings.data, cache_dir=out / "cache", embeddings=vectors_file, run_id=run_id,
                       **_values(settings, ScorerSettings, InputSettings, CurateSettings, EngineSettings),
                       **scorer_options)
        (out / MANIFEST).unlink(missing_ok=True)  # until the new one is written, the folder is visibly incomplete
        write_rejects(scored.rejects, out / "rejects.jsonl")
        selection = select(scored.table, data=scored.dataset, embeddings=vectors_file, cache_dir=out / "cache",
                           **_values(settings, SelectSettings), **strategy_options)
        table = stamp(with_selection(scored.table, selection), scored.dataset, run_id, manifest=True)
        write_parquet(table, out / "scores.parquet")
        subset_path = out / f"selected{scored.dataset.path.suffix}"
        write_subset(scored.dataset, selection.order, subset_path, order=settings.order)
        outputs = vouch(out, {"scores": "scores.parquet", "subset": subset_path.name,
                              "rejects": "rejects.jsonl", "report": "report.html"})
        manifest = build_manifest(scored, selection, seconds=time.perf_counter() - started, outputs=outputs,
                                  run_id=run_id, config=run_config("run", settings, built, selector))
        build_report(out, manifest=manifest, table=table)
        atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))  # last: it vouches for the rest
    return scored, selection


def split_run_options(strategy: str, options: dict) -> tuple[dict, dict]:
    """(the scorers' options, the strategy's) of `options`: a name goes to the scorers that
    declare it and to the strategy when it declares it; `OWNER.NAME` to its owner. A name
    only another strategy declares goes to the strategy, which refuses it (naming what it
    takes); a name nothing declares is an error."""
    check_known(options, {"scorer": SCORERS, "strategy": SELECTORS})
    plain, scoped = split_scoped(options)
    scorer_names = {o.name for cls in SCORERS.values() for o in declared(cls)}
    chosen = {o.name for o in declared(SELECTORS[strategy])} if strategy in SELECTORS else set()
    for_scorers = {k: v for k, v in plain.items() if k in scorer_names}
    for_strategy = {k: v for k, v in plain.items() if k in chosen or k not in scorer_names}
    for owner, given in scoped.items():
        for name, value in given.items():
            if owner == strategy and name in chosen:
                for_strategy[f"{owner}.{name}"] = value
            elif owner in SCORERS:
                for_scorers[f"{owner}.{name}"] = value
            else:
                for_strategy[f"{owner}.{name}"] = value
    return for_scorers, for_strategy


def _values(settings, *groups: type) -> dict:
    """The values of `settings` that the settings classes `groups` declare for the command
    line (not the input, given apart, nor the paths `run` chooses itself)."""
    names = {o.name for group in groups for o in declared(group) if o.spec.cli and not o.spec.argument}
    return {k: v for k, v in option_values(settings).items() if k in names}


def _check_before_scoring(settings: RunSettings, scorer_options: dict, strategy_options: dict):
    """Everything `run` can check before it scores: scorer options, the strategy and its
    options, the ranking column and the filters against the columns the scorers make, the
    budget's and the pool's form. Returns the scorers and the strategy (for the manifest)."""
    built = build_scorers(settings.scorers, scorer_options)
    columns = ["row", "id", *(c for s in built for c in s.columns)]
    selector = build_selector(settings.strategy, strategy_options)
    pool_count(settings.pool, ranking_column(settings.by, columns, settings.strategy), 1, 1)
    check_columns([parse_where(expression) for expression in settings.where], columns)
    parse_budget(settings.budget, 1)
    check_curation(settings)
    return built, selector
