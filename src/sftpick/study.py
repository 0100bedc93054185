"""`sftpick study`: which method, at this size, beats random on my data, and by how much? The
bake-off in one command: score the pool once, select every method's subset from that one
score table, fine-tune every arm (and random, longest, full) with the same seeds, measure
held-out loss (and judged win rates with `--prompts`), and write one leaderboard with what
each method cost. Resumable end to end (scores, the strategies' stages and the fine-tunes are
cached), and its manifest replays it (`sftpick study --config OUT/manifest.json`)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from pathlib import Path

from .curation import DedupSettings, MatchSettings
from .errors import OptionError
from .options import declared, option, option_values, settings_from
from .pipeline import split_run_options
from .scoring import score
from .selection import build_selector, select_subset
from .selectors import SELECTORS
from .train.api import HeldOutSettings, TrainingRunSettings, WinRateSettings, evaluate, test_sets
from .train.arms import BASELINES, file_names
from .train.config import TrainConfig
from .train.harness import HarnessSettings
from .writers import atomic_write

MEASURES = ("loss", "win_rate")


@dataclass(kw_only=True)
class StudySettings(TrainingRunSettings, WinRateSettings, HarnessSettings, HeldOutSettings, DedupSettings):
    """`sftpick study`'s own settings (training settings, scorers' and strategies' options apart)."""

    data: Path = option(help="The pool: the records every method selects from (any supported format).",
                        argument=True)
    methods: list[str] = option(["topk:ifd", "kcenter", "random"], "A method to compare, repeatable: a strategy "
                                "(ranked by its default --by), STRATEGY:COLUMN to rank by COLUMN (topk:ifd, "
                                "topk:len, deita:deita_score), or random, longest, full.", flags=("--method",),
                                repeat=True)
    budget: str = option("5%", "Records every arm keeps: a count, fraction or % of the pool.")
    scorers: list[str] = option(["ifd", "len"], "Scorers run once over the pool (the columns the methods rank "
                                                "by).")
    measure: str = option("loss", "What orders the leaderboard: loss (the first eval set's held-out loss, lower "
                                  "first) or win_rate (against random, higher first).", choices=MEASURES)


def study(data: str | Path, output_dir: str | Path, **options) -> dict:
    """Run the bake-off; returns the leaderboard (also `OUTPUT_DIR/leaderboard.json`, `.md`)."""
    settings, rest = settings_from(StudySettings, {"data": data, "output_dir": output_dir, **options})
    training = {f.name: rest.pop(f.name) for f in fields(TrainConfig) if f.name in rest}
    methods = [parse_method(m) for m in settings.methods]
    strategies = [m for m in methods if m["strategy"]]
    scorer_options, strategy_options = split_run_options(strategies[0]["strategy"] if strategies else "topk", rest)
    for method in strategies:  # every option checked before any work
        build_selector(method["strategy"], _own(strategy_options, method["strategy"]))
    out, costs = Path(settings.output_dir), {}
    started = time.perf_counter()
    curation = {o.name: getattr(settings, o.name) for cls in (DedupSettings, MatchSettings) for o in declared(cls)}
    scored = score(settings.data, out / "scores.parquet", scorers=settings.scorers, fmt=settings.fmt,
                   progress=settings.progress, model=settings.model, device=settings.device,
                   decontaminate=test_sets(settings, *_targets(strategy_options)), **curation, **scorer_options)
    costs["scoring"] = time.perf_counter() - started
    subsets = {}
    for method in strategies:
        started = time.perf_counter()
        subsets[method["name"]] = out / "subsets" / method["name"] / f"selected{settings.data.suffix}"
        select_subset(settings.data, out / "scores.parquet", subsets[method["name"]], budget=settings.budget,
                      strategy=method["strategy"], by=method["by"], **_own(strategy_options, method["strategy"]))
        costs[method["name"]] = time.perf_counter() - started
    result = evaluate(list(subsets.values()), out / "eval", config=training, pool=settings.data,
                      baselines=[m["name"] for m in methods if not m["strategy"]], size=settings.budget,
                      **_eval_options(settings))
    board = leaderboard(result, subsets, costs, settings.measure)
    board["pool"] = {"records": scored.counts["input"], "removed_before_selection": scored.counts.get("removed_by_reason", {}),
                     "tests_found": scored.curation.get("tests_found", {}), "dedup": settings.dedup,
                     "decontaminate": settings.decontaminate}
    atomic_write(out / "leaderboard.json", json.dumps(board, indent=2))
    atomic_write(out / "leaderboard.md", leaderboard_markdown(board))
    config = {"command": "study", **option_values(settings), **TrainConfig(**training).to_dict()}
    atomic_write(out / "manifest.json", json.dumps({"config": config, "costs_seconds": costs,
                                                    "eval_manifest": str(out / "eval" / "manifest.json")}, indent=2))
    return board


def parse_method(text: str) -> dict:
    """`kcenter` -> the strategy, its default ranking; `topk:len` -> ranked by len; `random`,
    `longest`, `full` -> the baseline."""
    strategy, _, by = text.partition(":")
    if strategy in BASELINES and not by:
        return {"name": strategy, "strategy": None, "by": None}
    if strategy not in SELECTORS:
        raise OptionError(f"method {text!r}: {strategy!r} is neither a strategy ({', '.join(sorted(SELECTORS))}) "
                          f"nor a baseline ({', '.join(BASELINES)})")
    return {"name": text.replace(":", "-"), "strategy": strategy, "by": by or None}


def _own(options: dict, strategy: str) -> dict:
    """The strategy options that apply to `strategy`: the plain ones it declares, its scoped ones."""
    names = {o.name for o in declared(SELECTORS[strategy])}
    return {k: v for k, v in options.items()
            if (k in names) or (k.partition(".")[0] == strategy and k.partition(".")[2] in names)}


def _targets(strategy_options: dict) -> list[Path]:
    """The target files the targeted strategies were given (`target`, or `rds.target`, …)."""
    return list(dict.fromkeys(Path(v) for k, v in strategy_options.items()
                              if k.rpartition(".")[2] == "target" and v is not None))


def _eval_options(settings: StudySettings) -> dict:
    """The settings `evaluate` takes, as the study has them."""
    names = {o.name for cls in (TrainingRunSettings, WinRateSettings, HarnessSettings, HeldOutSettings)
             for o in declared(cls)}
    return {k: getattr(settings, k) for k in names if k != "output_dir"}


def leaderboard(result: dict, subsets: dict, costs: dict, measure: str) -> dict:
    """One row per method: held-out loss per eval set and its difference to random with the
    interval computed (paired where the arm shares random's seeds, else Welch), the win rate
    against random, records, tokens, and the seconds of selection (this run's: a rerun selects
    again, from the strategies' caches) and of training (as recorded when trained); ordered by
    `measure`, with a note where an interval cannot separate the method from random."""
    training = {}
    for arm in result["arms"]:  # as recorded when it was trained, also for a rerun that reused it
        training[arm["name"]] = training.get(arm["name"], 0.0) + arm["seconds"]
    names = dict(zip(file_names([str(path) for path in subsets.values()]), subsets))  # eval's arm names
    rows = []
    for row in result["summary"]:
        name = names.get(row["name"], row["name"])
        entry = {"method": name, "seeds": row["seeds"], "records": row["n_records"],
                 "response_tokens": row["n_response_tokens"], "selection_seconds": round(costs.get(name, 0.0), 1),
                 "training_seconds": round(training.get(row["name"], 0.0), 1), "loss": {}, "notes": []}
        for eval_set, cell in row["eval"].items():
            paired = cell.get("vs_random_paired_ci95")
            interval, how = (paired, "paired") if paired else (cell["vs_random_ci95"], "welch")
            entry["loss"][eval_set] = {"mean": cell["mean"], "vs_random": cell["vs_random"],
                                       "interval": interval, "interval_kind": how if interval else None}
            if interval and interval[0] <= 0 <= interval[1] and not cell["reference"]:
                entry["notes"].append(f"{eval_set}: the interval {_span(interval)} includes 0: not separated from "
                                      "random")
        rates = (row.get("win_rate") or {}).get("overall")
        entry["win_rate"] = rates and {"value": rates["win_rate"], "ci": rates["ci"], "n": rates["n"]}
        entry["accuracy"] = row.get("accuracy")
        rows.append(entry)
    first = next(iter(result["base"]["eval_loss"]))
    if measure == "win_rate":
        rows.sort(key=lambda r: -(r["win_rate"]["value"] if r["win_rate"] and r["win_rate"]["value"] else 0))
    else:
        rows.sort(key=lambda r: r["loss"][first]["mean"])
    return {"measure": measure, "order_by": first if measure == "loss" else "win rate against random",
            "base_model_loss": result["base"]["eval_loss"], "scoring_seconds": round(costs.get("scoring", 0.0), 1),
            "rows": rows}


def _span(interval: list[float]) -> str:
    return f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"


def leaderboard_markdown(board: dict) -> str:
    sets = list(board["base_model_loss"])
    head = "| method | records | response tokens | " + " | ".join(f"{s}: loss | vs random (95%)" for s in sets) + \
        " | win rate | selection s | training s |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in board["rows"]:
        cells = []
        for s in sets:
            cell = r["loss"][s]
            versus = "" if cell["vs_random"] is None else f"{cell['vs_random']:+.4f}"
            if cell["interval"]:
                versus += f" {_span(cell['interval'])} ({cell['interval_kind']})"
            cells += [f"{cell['mean']:.4f}", versus]
        rate = r["win_rate"]
        shown = "" if not rate or rate["value"] is None else f"{rate['value']:.3f}" + (
            f" [{rate['ci'][0]:.3f}, {rate['ci'][1]:.3f}]" if rate["ci"] else "")
        lines.append(f"| {r['method']} | {r['records']:,.0f} | {r['response_tokens']:,.0f} | " + " | ".join(cells)
                     + f" | {shown} | {r['selection_seconds']} | {r['training_seconds']} |")
    notes = [f"- {r['method']}: {note}" for r in board["rows"] for note in r["notes"]]
    return "\n".join(lines + ([""] + notes if notes else []) + _pool_lines(board.get("pool"))) + "\n"


def _pool_lines(pool: dict | None) -> list[str]:
    """What was removed from the pool before any method selected (duplicates, test records)."""
    if not pool:
        return []
    removed = ", ".join(f"{n} {reason}" for reason, n in pool["removed_before_selection"].items()) or "nothing"
    lines = ["", f"Pool: {pool['records']} records; removed before selection: {removed} (--dedup {pool['dedup']}"
                 + ("" if pool["decontaminate"] else "; --no-decontaminate: test records not looked for") + ")."]
    lines += [f"- {path}: {found['found_in_pool']} of its {found['records']} records were found in the pool"
              for path, found in pool["tests_found"].items()]
    return lines
