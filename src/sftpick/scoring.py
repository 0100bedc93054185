"""Scoring: every record of an input scored by the chosen scorers, or rejected with its
reason; the score table, the rejects and a manifest beside them. Input is validated here,
once, before anything is read or loaded."""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .cache import column_digests, content_digest
from .curation import CurateSettings, removal_counts
from .curation.stage import Curation, check_curation, curate, join_removed, mark_exact, without_rows
from .embeddings import embeddings_path, save_embeddings
from .engines import EngineSettings, trait
from .engines.stream import score_stream
from .errors import InvalidRecord, OptionError, did_you_mean
from .examples import FORMATS
from .io import Dataset, RejectLog, Source
from .manifest import manifest_header
from .options import check_known, component_options, declared, option, option_values, settings_from, split_scoped
from .provenance import HASH, new_run_id, stamp
from .scorers import SCORERS, Scorer, make_scorer
from .writers import atomic_write, output_lock, remove_stale_temps, sibling, write_parquet, write_rejects


@dataclass
class ScoreResult:
    table: pa.Table
    dataset: Dataset
    rejects: RejectLog  # on disk; iterate to read them back
    scorers: list[dict]
    timings: dict
    engine: dict = field(default_factory=dict)  # engine settings and device, for the manifest
    curation: dict = field(default_factory=dict)  # what was looked for before scoring, and found

    @property
    def counts(self) -> dict:
        """input = scored + rejected; `removed_by_reason`: the scored rows that selection drops
        first (duplicates, contaminated; those found before scoring have no scores)."""
        removed = removal_counts(self.table)
        counts = {"input": self.dataset.n_records, "scored": self.table.num_rows, "rejected": len(self.rejects),
                  **({"removed_by_reason": removed} if removed else {})}
        assert counts["input"] == counts["scored"] + counts["rejected"], f"counts do not reconcile: {counts}"
        return counts


@dataclass(kw_only=True)
class InputSettings:
    """The input file and how to read it (every command that reads one)."""

    data: Path = option(help="Input records: .json (array), .jsonl or .parquet.", argument=True)
    fmt: str | None = option(None, "alpaca | sharegpt | openai (default: detect).", flags=("--format",),
                             choices=FORMATS)
    strict: bool = option(False, "Stop at the first bad record instead of rejecting it.")


@dataclass(kw_only=True)
class ScorerSettings:
    """Which scorers run, and whether progress shows (`score` and `run`)."""

    scorers: list[str] | None = option(None, "Comma-separated scorers: " + ", ".join(sorted(SCORERS)) + ", ppl, "
                                             "knn_K (default: ifd, or what the strategy of `run` needs).")
    progress: bool = option(True, "Show progress (a bar on a terminal, a line every 10 s in a log).")


@dataclass(kw_only=True)
class ScoreSettings(InputSettings, ScorerSettings, CurateSettings, EngineSettings):
    """`score`'s own settings; the scorers' options travel beside them (`options.split_scoped`)."""

    output: Path | None = option(None, "Scores table (.parquet).", flags=("-o", "--output"))
    rejects: Path | None = option(None, "Rejects file (default: beside the output).")
    cache_dir: Path | None = option(None, "Resume cache (default: beside the output).", cli=False)
    embeddings: Path | None = option(None, "Vectors file of an embedding scorer (default: beside the output).",
                                     cli=False)
    run_id: str | None = option(None, "The run this scoring belongs to (set by `run`).", cli=False)


def build_scorers(names: list[str], options: dict) -> list[Scorer]:
    """The named scorers, each with the options given to all scorers that it declares and those
    given to it alone (`ifd.max_length`), checked. `ppl` is the IFD pass (its `ppl_cond` column;
    the model runs once for both); `knn_K` is `knn` with knn_k=K. An option no scorer declares
    (a typo) is an error, before anything loads; None means "the scorer's default"."""
    check_known(options, {"scorer": SCORERS})
    plain, scoped = split_scoped({k: v for k, v in options.items() if v is not None})
    scorers, seen = [], set()
    for name in names:
        name, extra = _scorer_alias(name)
        if name in seen:
            continue
        seen.add(name)
        if name not in SCORERS:
            raise OptionError(f"unknown scorer {name!r}{did_you_mean(name, [*SCORERS, 'ppl'])}; "
                              f"valid scorers: {', '.join(sorted(SCORERS))}, ppl, knn_K")
        given = component_options(SCORERS[name], plain, scoped.get(name, {}))
        scorer = make_scorer(name, **{**given, **extra})
        scorer.check()
        scorers.append(scorer)
    return scorers


def _scorer_alias(name: str) -> tuple[str, dict]:
    if name == "ppl":
        return "ifd", {}
    match = re.fullmatch(r"knn_(\d+)", name)
    return ("knn", {"knn_k": int(match[1])}) if match else (name, {})


def score(data: str | Path, output: str | Path | None = None, **options) -> ScoreResult:
    """Score every record of `data`; writes the table to `output` (Parquet) when given, the
    rejects to `rejects` (default: `X.rejects.jsonl` beside `X.parquet`), the kNN scorer's
    vectors to `embeddings` (default: `embeddings_path(output)`) and, last, a manifest
    (`X.manifest.json`), under a lock on `output`.

    `options`: the settings of `ScoreSettings` and `EngineSettings` (scorers, fmt, strict,
    progress, rejects, engine, workers, …: `engine` "local" runs the scorers in this process,
    or worker processes with `workers` > 1; "ray" on a Ray Data actor pool), and the scorers'
    own options, given to every scorer that declares them (`max_length=512`) or to one alone
    (`**{"ifd.max_length": 512}`). Every option is checked before the data is read or a model
    loads.
    """
    settings, options = settings_from(ScoreSettings, {"data": data, "output": output, **options})
    settings.check(device=options.get("device"))
    check_curation(settings)
    options = engine_options(settings, options)
    settings.scorers = settings.scorers or ["ifd"]
    built = build_scorers(settings.scorers, options)
    if settings.output is None:
        return _score(settings, built)
    started = time.perf_counter()
    output = settings.output
    with output_lock(output.with_name(f".{output.name}.lock")):
        settings.cache_dir = settings.cache_dir or Path(str(output) + ".cache")
        settings.run_id = settings.run_id or new_run_id()
        remove_run_temps(output.parent, output.name, settings.cache_dir)
        result = _score(settings, built)
        rejects = settings.rejects or rejects_path(output)
        write_rejects(result.rejects, rejects)
        manifest = build_manifest(result, None, seconds=time.perf_counter() - started, run_id=settings.run_id,
                                  outputs={"scores": {"file": str(output)}, "rejects": {"file": str(rejects)}},
                                  config=run_config("score", settings, built))
        atomic_write(sibling(output, ".manifest.json"), json.dumps(manifest, indent=2, default=str))
        return result


def run_config(command: str, settings, scorers: list[Scorer], selector=None) -> dict:
    """The whole configuration of a command as plain data, in the shape of a config file (a
    table per component): saved in the manifest, so `--config manifest.json` replays it."""
    shown = {o.name for o in declared(type(settings)) if o.spec.cli}  # not the run id, nor API-only paths
    config = {"command": command, **{k: v for k, v in option_values(settings).items() if k in shown}}
    config["data"] = str(Path(config["data"]).resolve())
    for scorer in scorers:
        config[scorer.name] = scorer.options()
    if selector is not None:
        config.setdefault(selector.name, {}).update(selector.options())
    return config


def engine_options(settings: EngineSettings, options: dict) -> dict:
    """The scorers' options for this engine: on Ray workers without a GPU, device "auto"
    means the CPU (the driver may have a GPU that the workers do not)."""
    if settings.engine == "ray" and not settings.gpus_per_worker and options.get("device", "auto") == "auto":
        return {**options, "device": "cpu"}
    return options


def rejects_path(output: str | Path) -> Path:
    return sibling(output, ".rejects.jsonl")


def remove_run_temps(folder: Path, name: str, cache_dir: Path | None) -> None:
    """What a killed earlier writer of this output left behind (call under its lock)."""
    remove_stale_temps(folder, name)
    for shard_dir in cache_dir.glob("*/") if cache_dir and cache_dir.is_dir() else []:
        remove_stale_temps(shard_dir)


def _score(settings: ScoreSettings, built: list[Scorer]) -> ScoreResult:
    source = Source(settings.data, settings.fmt, strict=settings.strict)
    derived = [s for s in built if trait(s, "derived")]  # e.g. rule: from other columns
    for scorer in derived:
        scorer.setup()
        scorer.check_inputs([c for s in built if s not in derived for c in s.columns])
    device = next((s.device for s in built if hasattr(s, "device")), "auto")
    with settings.make() as engine:
        curation = curate(source, settings, engine, cache_dir=settings.cache_dir, chunk_size=settings.chunk_size,
                          progress=settings.progress, device=device)
        chunks = engine.chunks(source, settings.chunk_size)
        scored = score_stream(without_rows(chunks, curation.rows()) if curation else chunks,
                              [s for s in built if s not in derived], cache_dir=settings.cache_dir,
                              source=str(source.path), progress=settings.progress, shard_size=settings.shard_size,
                              engine=engine, total=source.estimate())
        engine_settings = {**engine.settings(), "device": _device_used(device, engine.settings()),
                           "chunk_size": settings.chunk_size, "shard_size": settings.shard_size}
    table = scored.table
    for scorer in derived:
        numeric = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
                   if name not in ("id", "content_hash")}
        for name, values in scorer.derive(numeric).items():
            table = table.append_column(name, pa.array(values))
    if settings.strict and scored.rejects:  # a scorer's (the reader raised at the first bad record)
        first = next(iter(scored.rejects))
        raise InvalidRecord(f"{first.file}, row {first.row}: {first.reason} (--strict stops at the first bad record)")
    dataset = source.dataset(None, None)
    embeddings = settings.embeddings or (embeddings_path(settings.output) if settings.output is not None else None)
    if embeddings is not None:
        _save_vectors(built, scored.vectors, table, Path(embeddings))
    table = join_removed(table, curation)
    table = mark_exact(table) if settings.dedup != "none" else table
    table = stamp(table, dataset, settings.run_id or new_run_id(), scorers=[s.config() for s in built])
    result = ScoreResult(table, dataset, scored.rejects, [s.config() for s in built], scored.timings,
                         engine_settings, curation_record(settings, curation, table))
    if settings.output is not None:
        write_parquet(table, settings.output)
    return result


def curation_record(settings: CurateSettings, curation: Curation | None, table: pa.Table) -> dict:
    """The manifest's account of the curation stage: its settings, what it found, its time;
    with `dedup="none"`, how many exact duplicates were kept."""
    names = {o.name for o in declared(CurateSettings)}
    record = {k: v for k, v in option_values(settings).items() if k in names}
    if curation is not None:
        record.update(seconds=curation.seconds, steps=curation.timings, tests_found=curation.tests_found)
    if settings.dedup == "none":
        record["exact_duplicates_kept"] = int(table.num_rows - len(np.unique(column_digests(table.column(HASH)))))
    return record


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


def build_manifest(scored: ScoreResult, selection=None, *, seconds: float, outputs: dict,
                   run_id: str | None = None, config: dict | None = None) -> dict:
    """Everything needed to trace the outputs to the data, models and settings that made them
    (`selection`: a selection.Selection, for a run that selected)."""
    reasons = Counter(r.kind for r in scored.rejects)
    manifest = {
        **manifest_header(run_id),
        **({"config": config} if config else {}),
        "input": {"path": str(scored.dataset.path.resolve()), "sha256": scored.dataset.sha256,
                  "kind": scored.dataset.kind, "format": scored.dataset.format},
        "counts": {**scored.counts, "rejected_by_reason": dict(reasons.most_common())},
        "scorers": scored.scorers,
        "engine": scored.engine,
        "curation": scored.curation,
        "timings": {"total_seconds": round(seconds, 3), "scorers": scored.timings},
        "outputs": outputs,
    }
    if selection is not None:
        manifest["counts"]["selected"] = int(len(selection.rows))
        manifest["selection"] = {**selection.params, "dropped": selection.dropped, "notes": selection.notes,
                                 "stats": selection.stats}
    return manifest
