"""The public Python API: `score`, `select` and `run` (and `evaluate`, `rule_experiments` from
train/api.py). Input is validated here, once."""
from __future__ import annotations

import functools
import inspect
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .cache import content_digest
from .embeddings import embeddings_path, save_embeddings
from .engines import check_engine, make_engine, trait
from .engines.local import score_stream
from .errors import did_you_mean
from .examples import Example
from .filters import apply as apply_filters, check_columns, ifd_band, parse_where
from .io import CHUNK_RECORDS, Dataset, RejectLog, Source, read_dataset, scan_dataset
from .provenance import MANIFEST, align, check_scores_file, new_run_id, same_file, stamp, table_meta, vouch
from .report import build_report
from .scorers import SCORERS, Scorer, make_scorer
from .selectors import SELECTORS, make_selector, parse_budget
from .selectors.topk import TopK
from .selectors.vectors import default_path, embed_records, table_vectors
from .train.api import evaluate, rule_experiments  # noqa: F401  (public API)
from .writers import (ORDERS, atomic_write, file_sha256, output_lock, remove_stale_temps, sibling, write_parquet,
                      write_rejects, write_subset)

DEFAULT_MAX_IFD = 1.0
LIBRARIES = ("torch", "transformers", "sentence-transformers", "numpy", "pyarrow", "faiss-cpu", "scikit-learn")


@dataclass
class ScoreResult:
    table: pa.Table
    dataset: Dataset
    rejects: RejectLog  # on disk; iterate to read them back
    scorers: list[dict]
    timings: dict
    engine: dict = field(default_factory=dict)  # engine settings and device, for the manifest

    @property
    def counts(self) -> dict:
        counts = {"input": self.dataset.n_records, "scored": self.table.num_rows, "rejected": len(self.rejects)}
        assert counts["input"] == counts["scored"] + counts["rejected"], f"counts do not reconcile: {counts}"
        return counts


@dataclass
class Selection:
    rows: np.ndarray  # input rows, ascending
    requested: int
    dropped: dict[str, int] = field(default_factory=dict)  # filter reason -> records dropped
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # what the strategy measured (e.g. covering radius)
    order: np.ndarray | None = None  # the same rows in the order the strategy picked them (best first)


def build_scorers(names: list[str], options: dict) -> list[Scorer]:
    """Each named scorer gets the options its constructor accepts. `ppl` is the IFD pass (its
    `ppl_cond` column; the model runs once for both); `knn_K` is `knn` with knn_k=K. An
    option no scorer takes (a typo) is an error, before anything loads."""
    known = {p for cls in SCORERS.values() for p in inspect.signature(cls).parameters}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option {', '.join(unknown)}{did_you_mean(unknown[0], known)}")
    scorers, seen = [], set()
    for name in names:
        name, extra = _scorer_alias(name)
        if name in seen:
            continue
        seen.add(name)
        if name not in SCORERS:
            raise ValueError(f"unknown scorer {name!r}{did_you_mean(name, [*SCORERS, 'ppl'])}; "
                             f"valid scorers: {', '.join(sorted(SCORERS))}, ppl, knn_K")
        accepted = inspect.signature(SCORERS[name]).parameters
        given = {k: v for k, v in options.items() if k in accepted and v is not None}
        scorer = make_scorer(name, **{**given, **extra})
        scorer.check()
        scorers.append(scorer)
    return scorers


def _scorer_alias(name: str) -> tuple[str, dict]:
    if name == "ppl":
        return "ifd", {}
    match = re.fullmatch(r"knn_(\d+)", name)
    return ("knn", {"knn_k": int(match[1])}) if match else (name, {})


def score(data: str | Path, output: str | Path | None = None, *, scorers: list[str] | None = None,
          fmt: str | None = None, strict: bool = False, cache_dir: str | Path | None = None,
          progress: bool = True, embeddings: str | Path | None = None, shard_size: int = 64,
          workers: int = 1, run_id: str | None = None, rejects: str | Path | None = None,
          engine: str = "local", ray_address: str | None = None, gpus_per_worker: float = 0.0,
          chunk_size: int = CHUNK_RECORDS, **options) -> ScoreResult:
    """Score every record of `data`; writes the table to `output` (Parquet) when given, the
    rejects to `rejects` (default: `X.rejects.jsonl` beside `X.parquet`), the kNN scorer's
    vectors to `embeddings` (default: `embeddings_path(output)`) and, last, a manifest
    (`X.manifest.json`), under a lock on `output`.

    `engine` runs the scorers: "local" (this process; `workers` > 1: worker processes for
    the scorers that run a model) or "ray" (a Ray Data actor pool of `workers` actors with
    `gpus_per_worker` GPUs each, on the cluster at `ray_address`, else a local one).

    `options` go to the scorers that accept them: model, variant, template, max_length,
    device, dtype, token_budget, packing, trust_remote_code, deita_complexity_model, … Every
    option is checked before the data is read or a model loads.
    """
    _check_positive(shard_size=shard_size, workers=workers, chunk_size=chunk_size)
    check_engine(engine, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker,
                 device=options.get("device"))
    options = engine_options(engine, gpus_per_worker, options)
    built = build_scorers(list(scorers or ["ifd"]), options)
    settings = {"engine": engine, "workers": workers, "ray_address": ray_address, "gpus_per_worker": gpus_per_worker,
                "device": options.get("device"), "shard_size": shard_size, "chunk_size": chunk_size}
    if output is None:
        return _score(data, None, built, fmt, strict, cache_dir, progress, embeddings, settings, run_id)
    started = time.perf_counter()
    output = Path(output)
    with output_lock(output.with_name(f".{output.name}.lock")):
        cache_dir = Path(cache_dir) if cache_dir else Path(str(output) + ".cache")
        _remove_stale_temps(output.parent, output.name, cache_dir)
        run_id = run_id or new_run_id()
        result = _score(data, output, built, fmt, strict, cache_dir, progress, embeddings, settings, run_id)
        rejects = Path(rejects or rejects_path(output))
        write_rejects(result.rejects, rejects)
        manifest = build_manifest(result, None, seconds=time.perf_counter() - started, run_id=run_id,
                                  outputs={"scores": {"file": str(output)}, "rejects": {"file": str(rejects)}})
        atomic_write(sibling(output, ".manifest.json"), json.dumps(manifest, indent=2, default=str))
        return result


def engine_options(engine: str, gpus_per_worker: float, options: dict) -> dict:
    """The scorers' options for this engine: on Ray workers without a GPU, device "auto"
    means the CPU (the driver may have a GPU that the workers do not)."""
    if engine == "ray" and not gpus_per_worker and options.get("device", "auto") == "auto":
        return {**options, "device": "cpu"}
    return options


def rejects_path(output: str | Path) -> Path:
    return sibling(output, ".rejects.jsonl")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} should be a whole number >= 1")


def _remove_stale_temps(folder: Path, name: str, cache_dir: Path | None) -> None:
    """What a killed earlier writer of this output left behind (call under its lock)."""
    remove_stale_temps(folder, name)
    for shard_dir in cache_dir.glob("*/") if cache_dir and cache_dir.is_dir() else []:
        remove_stale_temps(shard_dir)


def _score(data, output: Path | None, built: list[Scorer], fmt, strict, cache_dir, progress, embeddings,
           settings: dict, run_id: str | None) -> ScoreResult:
    source = Source(data, fmt, strict=strict)
    derived = [s for s in built if trait(s, "derived")]  # e.g. rule: from other columns
    for scorer in derived:
        scorer.setup()
        scorer.check_inputs([c for s in built if s not in derived for c in s.columns])
    engine_keys = ("engine", "workers", "ray_address", "gpus_per_worker")
    with make_engine(**{key: settings[key] for key in engine_keys}) as engine:
        scored = score_stream(engine.chunks(source, settings["chunk_size"]),
                              [s for s in built if s not in derived], cache_dir=Path(cache_dir) if cache_dir else None,
                              source=str(source.path), progress=progress, shard_size=settings["shard_size"],
                              engine=engine, total=source.estimate())
        engine_settings = {**engine.settings(), "device": _device_used(settings["device"], engine.settings()),
                           "chunk_size": settings["chunk_size"], "shard_size": settings["shard_size"]}
    table = scored.table
    for scorer in derived:
        numeric = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
                   if name not in ("id", "content_hash")}
        for name, values in scorer.derive(numeric).items():
            table = table.append_column(name, pa.array(values))
    if strict and scored.rejects:  # a scorer's (the reader raised at the first bad record)
        first = next(iter(scored.rejects))
        raise ValueError(f"{first.file}, row {first.row}: {first.reason} (--strict stops at the first bad record)")
    dataset = source.dataset(None, None)
    table = stamp(table, dataset, run_id or new_run_id())
    result = ScoreResult(table, dataset, scored.rejects, [s.config() for s in built], scored.timings,
                         engine_settings)
    if output is not None:
        write_parquet(table, output)
    embeddings = embeddings or (embeddings_path(output) if output is not None else None)
    if embeddings is not None:
        _save_vectors(built, scored.vectors, table, Path(embeddings))
    return result


def _save_vectors(scorers: list[Scorer], vectors: dict[str, np.ndarray], table: pa.Table, path: Path) -> None:
    """The embedding scorer's vectors (one per table row; identical records share one) to the
    vectors file beside the scores, for the selectors, with what made them."""
    for scorer in scorers:
        if scorer.name in vectors:
            digest = content_digest(table.column("content_hash").to_pylist())  # the records they belong to
            meta = {**scorer.vector_config(), "content_digest": digest}
            save_embeddings(path, table.column("row").to_numpy(), vectors[scorer.name], meta)
            return


def _device_used(device: str | None, settings: dict) -> str:
    """The device the scorers ran on: as given, or what "auto" resolved to where they ran."""
    if device not in (None, "auto"):
        return device
    if settings["engine"] == "ray":
        return "cuda" if settings.get("gpus_per_worker") else "cpu"
    from .models import resolve_device

    return resolve_device("auto")


def select(scores: pa.Table | str | Path, budget: int | float | str, *, by: str | None = None,
           ascending: bool = False, max_ifd: float | None = None, min_ifd: float | None = None,
           where: list[str] | None = None, strategy: str = "topk", pool: int | float | str | None = None,
           data: str | Path | Dataset | None = None, embeddings: np.ndarray | str | Path | None = None,
           cache_dir: str | Path | None = None, **strategy_options) -> Selection:
    """Choose rows of a score table, ranked by `by` (default: `ifd` when the table has it;
    none for a diversity strategy on a table without it: coverage alone). Filters come first,
    each a counted drop reason: `where` conditions on any column (`"judge>=4.5"`) and, when
    ranking by `ifd`, ifd >= `max_ifd` (default 1.0: the instruction does not help), or the
    band `min_ifd` < ifd < `max_ifd`. `pool` (a count or fraction of the scored records)
    keeps only the best-ranked for the strategy to choose from: quality first, then
    diversity. Strategies that need embeddings get the candidates' vectors only: from
    `embeddings` (vectors aligned with the table, or a file; default: beside `scores`), or
    computed from `data` through the per-record cache in `cache_dir` (default: the scores'
    own, `X.parquet.cache`) and saved there."""
    strategy_options = {k: v for k, v in strategy_options.items() if v is not None}
    check_strategy(strategy, strategy_options)
    conditions = [parse_where(expression) for expression in where or []]
    table = check_scores_file(scores) if isinstance(scores, (str, Path)) else scores
    if table.num_rows == 0:
        raise ValueError("the scores hold no record (every input record was rejected; the rejects file "
                         "says why): nothing to select")
    by = ranking_column(by, table.column_names, strategy)
    if max_ifd is None and by == "ifd":
        max_ifd = DEFAULT_MAX_IFD
    conditions = ifd_band(max_ifd, min_ifd) + conditions
    check_columns(conditions, table.column_names)
    requested = parse_budget(budget, table.num_rows)
    pool_count = _pool_count(pool, by, table.num_rows, requested)
    dataset = scan_dataset(data) if isinstance(data, (str, Path)) else data
    notes = []
    if dataset is not None and not same_file(table, dataset):
        if dataset.examples is None:  # its records are needed now, to find the scored ones by content
            dataset = read_dataset(dataset.path, dataset.format)
        table, note = align(table, dataset, str(scores) if isinstance(scores, (str, Path)) else "the scores")
        notes += [note] if note else []
    filtered, dropped = apply_filters(table, conditions)
    candidates = filtered
    if pool_count is not None:
        candidates = filtered[np.sort(TopK(by, ascending=ascending).select(table.take(filtered), pool_count))]
        dropped[f"outside the pool (the best {pool} by {by})"] = len(filtered) - len(candidates)
    if cache_dir is None and isinstance(scores, (str, Path)):
        cache_dir = Path(str(scores) + ".cache")
    vectors, selector_options, made_by = _strategy_inputs(strategy, table, candidates, strategy_options, scores,
                                                          dataset, embeddings, cache_dir)
    selector = make_selector(strategy, by=by, ascending=ascending, **selector_options)
    chosen = selector.select(table.take(candidates), min(requested, len(candidates)),
                             vectors) if len(candidates) else np.array([], int)
    order = table.column("row").to_numpy()[candidates[chosen]]
    notes += list(getattr(selector, "notes_", []))
    if by is None:
        notes.append(f"no ranking column: {strategy} chose by coverage alone (ties in input order)")
    if len(filtered) < requested:
        notes.append(f"selected {len(order)} of the {requested} asked for: "
                     f"{table.num_rows - len(filtered)} of {table.num_rows} scored records were filtered out")
    params = {"strategy": strategy, "by": by, "ascending": ascending, "budget": str(budget),
              "budget_count": requested, "max_ifd": max_ifd, "min_ifd": min_ifd, "where": list(where or []),
              "pool": None if pool is None else str(pool), **strategy_options,
              **({"embeddings": made_by} if made_by else {})}
    return Selection(np.sort(order), requested, dropped, params, notes, getattr(selector, "stats_", {}), order)


def ranking_column(by: str | None, columns: list[str], strategy: str) -> str | None:
    """`by` checked against the columns; by default `ifd`, or None (coverage alone) for a
    strategy that can choose without a ranking."""
    if by is not None:
        if by not in columns:
            raise ValueError(f"by={by!r} is not a column of the scores; columns: {', '.join(columns)}")
        return by
    for default in (getattr(SELECTORS[strategy], "default_by", None), "ifd"):
        if default in columns:
            return default
    if getattr(SELECTORS[strategy], "needs_ranking", False):
        raise ValueError(f"strategy {strategy!r} ranks by a score column and the scores have no 'ifd': "
                         f"pass by= (--by) one of {', '.join(columns)}")
    return None


def _pool_count(pool, by: str | None, n: int, requested: int) -> int | None:
    if pool is None:
        return None
    if by is None:
        raise ValueError(f"pool={pool!r} keeps the best-ranked records, but nothing ranks them: pass by= (--by)")
    count = parse_budget(pool, n)
    if count < requested:
        raise ValueError(f"pool={pool!r} keeps {count} records, fewer than the budget of {requested}")
    return count


def check_strategy(strategy: str, options: dict) -> None:
    """The strategy exists and takes every option given; nothing is read or loaded."""
    if strategy not in SELECTORS:
        raise ValueError(f"unknown strategy {strategy!r}{did_you_mean(strategy, SELECTORS)}; "
                         f"valid strategies: {', '.join(sorted(SELECTORS))}")
    parameters = inspect.signature(SELECTORS[strategy]).parameters
    accepted = set(parameters) - {"by", "ascending", "centers"} | ({"seed_set"} if "centers" in parameters else set())
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"option {', '.join(unknown)} does not apply to strategy {strategy!r}"
                         f"{did_you_mean(unknown[0], accepted)} "
                         f"(it takes: {', '.join(sorted(accepted)) or 'no options'})")
    if "seed_set" in options and not Path(options["seed_set"]).is_file():
        raise ValueError(f"seed_set={str(options['seed_set'])!r}: no such file")
    make_selector(strategy, **{k: v for k, v in options.items() if k != "seed_set"}).check()


def _strategy_inputs(strategy: str, table: pa.Table, candidates: np.ndarray, options: dict, scores,
                     dataset: Dataset | None, embeddings, cache_dir: Path | None
                     ) -> tuple[np.ndarray | None, dict, dict]:
    """The vectors of the candidates (table positions) if the strategy needs them (else None),
    its constructor options (a k-center `seed_set` file becomes `centers`) and what made the
    vectors (embedder, revision, text, dtype: for the manifest)."""
    if not getattr(SELECTORS[strategy], "needs_embeddings", False):
        return None, options, {}
    if not len(candidates):  # nothing to choose from: no vectors to read or make
        return None, {key: value for key, value in options.items() if key != "seed_set"}, {}
    if isinstance(embeddings, np.ndarray):
        if embeddings.ndim != 2 or len(embeddings) != table.num_rows:
            raise ValueError(f"embeddings of shape {embeddings.shape} do not match the {table.num_rows} "
                             "rows of the scores (expected one vector per row, in table order)")
        vectors, meta = embeddings[candidates], {}
    else:
        path = Path(embeddings) if embeddings is not None else default_path(scores)
        defaults = {name: p.default for name, p in inspect.signature(SELECTORS[strategy]).parameters.items()}
        embedder = options.get("embedder", defaults.get("embedder"))  # a strategy's own (pre_experience: the LM's)
        if embedder and path is not None:
            path = sibling(path, "-" + re.sub(r"[^\w.-]+", "_", embedder) + ".parquet")
        vectors, meta = table_vectors(table, candidates, path, _records_of(dataset), strategy,
                                      embedder, options.get("embed_text", defaults.get("embed_text", "whole")),
                                      Path(cache_dir) if cache_dir else None)
    options = dict(options)
    if "seed_set" in options:
        options["centers"] = embed_records(read_dataset(options.pop("seed_set")).examples, meta)
    return vectors, options, {key: meta[key] for key in ("model", "revision", "text", "dtype") if key in meta}


def run(data: str | Path, output_dir: str | Path, budget: int | float | str, *,
        scorers: list[str] | None = None, fmt: str | None = None, strict: bool = False,
        progress: bool = True, by: str | None = None, ascending: bool = False,
        max_ifd: float | None = None, min_ifd: float | None = None, where: list[str] | None = None,
        strategy: str = "topk", pool: int | float | str | None = None, strategy_options: dict | None = None,
        order: str = "input", workers: int = 1, engine: str = "local", ray_address: str | None = None,
        gpus_per_worker: float = 0.0, chunk_size: int = CHUNK_RECORDS, **options) -> tuple[ScoreResult, Selection]:
    """Score, select and write `scores.parquet` (with `selected` and the pick `rank`),
    `selected.<ext>` (in input order, or the strategy's pick order with `order="pick"`),
    `rejects.jsonl` and `manifest.json` under `output_dir`, and `report.html` from them."""
    started = time.perf_counter()
    out = Path(output_dir)
    strategy_options = {k: v for k, v in (strategy_options or {}).items() if v is not None}
    check_engine(engine, workers=workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker,
                 device=options.get("device"))
    _check_run_options(scorers, options, by, where, budget, pool, strategy, strategy_options, order)
    run_id = new_run_id()
    with output_lock(out / ".lock"):
        _remove_stale_temps(out, "", out / "cache")
        vectors_file = embeddings_path(out / "scores.parquet")  # written by kNN, read by the selectors
        scored = score(data, scorers=scorers, fmt=fmt, strict=strict, cache_dir=out / "cache",
                       progress=progress, embeddings=vectors_file, workers=workers, run_id=run_id, engine=engine,
                       ray_address=ray_address, gpus_per_worker=gpus_per_worker, chunk_size=chunk_size, **options)
        (out / MANIFEST).unlink(missing_ok=True)  # until the new one is written, the folder is visibly incomplete
        write_rejects(scored.rejects, out / "rejects.jsonl")
        selection = select(scored.table, budget, by=by, ascending=ascending, max_ifd=max_ifd, min_ifd=min_ifd,
                           where=where, strategy=strategy, pool=pool, data=scored.dataset,
                           embeddings=vectors_file, cache_dir=out / "cache",
                           **strategy_options)
        table = stamp(with_selection(scored.table, selection), scored.dataset, run_id, manifest=True)
        write_parquet(table, out / "scores.parquet")
        subset_path = out / f"selected{scored.dataset.path.suffix}"
        write_subset(scored.dataset, selection.order, subset_path, order=order)
        outputs = vouch(out, {"scores": "scores.parquet", "subset": subset_path.name,
                              "rejects": "rejects.jsonl", "report": "report.html"})
        manifest = build_manifest(scored, selection, seconds=time.perf_counter() - started, outputs=outputs,
                                  run_id=run_id)
        build_report(out, manifest=manifest, table=table)
        atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, default=str))  # last: it vouches for the rest
    return scored, selection


def _records_of(dataset: Dataset | None) -> Callable[[], list[Example]] | None:
    """The dataset's records, read when first asked for: a streamed input (the one `run` just
    scored, not held in memory) is read again only if vectors must be computed from it."""
    if dataset is None:
        return None

    @functools.cache
    def records() -> list[Example]:
        return dataset.examples if dataset.examples is not None else read_dataset(dataset.path, dataset.format).examples
    return records


def with_selection(table: pa.Table, selection: Selection) -> pa.Table:
    """The score table with `selected` and `rank` (1 = picked first; null when not selected)."""
    rows = table.column("row").to_numpy()
    order = np.asarray(selection.order, dtype=np.int64)
    by_row = np.argsort(order, kind="stable")
    at = np.clip(np.searchsorted(order[by_row], rows), 0, max(len(order) - 1, 0))
    chosen = order[by_row][at] == rows if len(order) else np.zeros(len(rows), bool)
    rank = pa.array(by_row[at] + 1, mask=~chosen, type=pa.int64())
    return table.append_column("selected", pa.array(chosen)).append_column("rank", rank)


def _check_run_options(scorers: list[str] | None, options: dict, by: str | None, where: list[str] | None,
                       budget, pool, strategy: str, strategy_options: dict, order: str) -> None:
    """Everything `run` can check before it scores: scorer options, the ranking column and
    the filters against the columns the scorers make, the budget's and pool's form, the
    strategy and its options, the subset's order."""
    columns = ["row", "id", *(c for s in build_scorers(list(scorers or ["ifd"]), options) for c in s.columns)]
    check_strategy(strategy, strategy_options)
    _pool_count(pool, ranking_column(by, columns, strategy), 1, 1)
    check_columns([parse_where(expression) for expression in where or []], columns)
    parse_budget(budget, 1)
    if order not in ORDERS:
        raise ValueError(f"order={order!r} is not one of {', '.join(ORDERS)}")


def build_manifest(scored: ScoreResult, selection: Selection | None, *, seconds: float, outputs: dict,
                   run_id: str | None = None) -> dict:
    """Everything needed to trace the outputs to the data, models and settings that made them."""
    reasons = Counter(reason_kind(r.reason) for r in scored.rejects)
    manifest = {
        "sftpick_version": __version__,
        "run_id": run_id,
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "input": {"path": str(scored.dataset.path.resolve()), "sha256": scored.dataset.sha256,
                  "kind": scored.dataset.kind, "format": scored.dataset.format},
        "counts": {**scored.counts, "rejected_by_reason": dict(reasons.most_common())},
        "scorers": scored.scorers,
        "engine": scored.engine,
        "timings": {"total_seconds": round(seconds, 3), "scorers": scored.timings},
        "outputs": outputs,
    }
    if selection is not None:
        manifest["counts"]["selected"] = int(len(selection.rows))
        manifest["selection"] = {**selection.params, "dropped": selection.dropped, "notes": selection.notes,
                                 "stats": selection.stats}
    return manifest


def selection_manifest(dataset: Dataset, scores: str | Path, selection: Selection, subset: str | Path) -> dict:
    """What `select` wrote and from what: the data file, the scores (with their run id), the
    selection's parameters, drops, notes and figures."""
    return {"sftpick_version": __version__, "versions": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": sys.argv,
            "input": {"path": str(dataset.path.resolve()), "sha256": dataset.sha256, "format": dataset.format},
            "scores": {"path": str(Path(scores).resolve()), "sha256": file_sha256(scores),
                       "run_id": table_meta(pq.read_schema(scores)).get("run_id")},
            "subset": {"file": str(subset), "sha256": file_sha256(subset)},
            "counts": {"selected": int(len(selection.rows)), "requested": selection.requested},
            "selection": {**selection.params, "dropped": selection.dropped, "notes": selection.notes,
                          "stats": selection.stats}}


def library_versions() -> dict[str, str | None]:
    """Python's and the numeric libraries' versions: what else the figures depend on."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {"python": sys.version.split()[0], **{name: installed(name) for name in LIBRARIES}}


def reason_kind(reason: str) -> str:
    """Group reasons that differ only in detail ("invalid JSON: … at column 7")."""
    return reason.split(":")[0].split(" (")[0]
