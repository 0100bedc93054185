"""Selection: rows of a score table chosen by a strategy, after the filters (each drop a
counted reason) and the pool; the vectors a diversity strategy needs are read or made for
the candidates only. Input is validated here, once."""
from __future__ import annotations

import functools
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .budget import parse_budget
from .curation import removed_mask
from .errors import DataError, OptionError, did_you_mean
from .examples import FORMATS, Example
from .filters import apply as apply_filters
from .filters import check_columns, ifd_band, parse_where
from .io import ORDERS, Dataset, read_dataset, scan_dataset, write_subset
from .manifest import manifest_header
from .models import DEFAULT_EMBEDDER
from .options import declared, option, settings_from, split_scoped
from .provenance import align, check_scores_file, same_file, table_meta
from .selectors import SELECTORS, Selector, make_selector
from .selectors.topk import TopK
from .selectors.vectors import default_path, embed_records, table_vectors
from .writers import atomic_write, file_sha256, sibling

DEFAULT_MAX_IFD = 1.0


@dataclass
class Selection:
    rows: np.ndarray  # input rows, ascending
    requested: int
    dropped: dict[str, int] = field(default_factory=dict)  # filter reason -> records dropped
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # what the strategy measured (e.g. covering radius)
    order: np.ndarray | None = None  # the same rows in the order the strategy picked them (best first)


@dataclass(kw_only=True)
class SelectSettings:
    """How records are chosen from a score table (`select` and `run`); the strategy's own
    options travel beside them."""

    budget: int | float | str = option("5%", "Records to keep: a count (2000), fraction (0.05) or percentage (5%).")
    by: str | None = option(None, "Score column to rank by (default: ifd when scored; a diversity strategy "
                                  "without one chooses by coverage alone).")
    ascending: bool = option(False, "Lower is better (default: higher is better).")
    max_ifd: float | None = option(None, "Drop records with ifd >= this (default 1.0 when ranking by ifd).")
    min_ifd: float | None = option(None, "Drop records with ifd <= this: with --max-ifd, Superfiltering's IFD band "
                                         "(its diversity script keeps 0.9 < ifd < 1.0).")
    where: list[str] = option([], "Keep records where COLUMN OP NUMBER holds, e.g. \"judge>=4.5\" (repeatable; a "
                                  "missing value fails).", repeat=True)
    strategy: str = option("topk", "Selection strategy: " + " | ".join(sorted(SELECTORS)) + ".")
    pool: int | float | str | None = option(None, "Let the strategy choose among the best-ranked records only "
                                                  "(count, fraction or %), e.g. --pool 20% --strategy kcenter.")
    data: Path | None = option(None, "The scored records (to compute vectors, or match a moved file).", cli=False)
    embeddings: Path | None = option(None, "Vectors file of the scores (default: beside them).", cli=False)
    cache_dir: Path | None = option(None, "Per-record vectors cache (default: the scores' own).", cli=False)


def select(scores: pa.Table | str | Path, budget: int | float | str = "5%", **options) -> Selection:
    """Choose rows of a score table, ranked by `by` (default: `ifd` when the table has it;
    none for a diversity strategy on a table without it: coverage alone). Filters come first,
    each a counted drop reason: `where` conditions on any column (`"judge>=4.5"`) and, when
    ranking by `ifd`, ifd >= `max_ifd` (default 1.0: the instruction does not help), or the
    band `min_ifd` < ifd < `max_ifd`. Records the curation stage removed (duplicates,
    contaminated: the table's `removed` column) are dropped before any filter, each reason
    counted, and a fractional budget is a fraction of the records left. `pool` (a count or fraction of the scored records)
    keeps only the best-ranked for the strategy to choose from: quality first, then
    diversity. Strategies that need embeddings get the candidates' vectors only: from
    `embeddings` (vectors aligned with the table, or a file; default: beside `scores`), or
    computed from `data` (a file or a Dataset) through the per-record cache in `cache_dir`
    (default: the scores' own, `X.parquet.cache`) and saved there.

    `options`: the settings of `SelectSettings` and the strategy's own options (`tau=0.8`,
    or `**{"deita.tau": 0.8}`); an option of another strategy is an error."""
    dataset, vectors_in = options.pop("data", None), options.pop("embeddings", None)
    settings, strategy_options = settings_from(SelectSettings, {"budget": budget, **options})
    selector = build_selector(settings.strategy, strategy_options)
    conditions = [parse_where(expression) for expression in settings.where]
    table = check_scores_file(scores) if isinstance(scores, (str, Path)) else scores
    if table.num_rows == 0:
        raise DataError("the scores hold no record (every input record was rejected; the rejects file "
                        "says why): nothing to select")
    by = selector.by = ranking_column(settings.by, table.column_names, settings.strategy)
    selector.ascending = settings.ascending
    selector.prepare(table)
    max_ifd = DEFAULT_MAX_IFD if settings.max_ifd is None and by == "ifd" else settings.max_ifd
    conditions = ifd_band(max_ifd, settings.min_ifd) + conditions
    check_columns(conditions, table.column_names)
    removed, dropped_first = removed_mask(table)  # duplicates and contaminated, counted first
    n_left = table.num_rows - int(removed.sum())
    requested = parse_budget(settings.budget, n_left)
    pool_size = pool_count(settings.pool, by, n_left, requested)
    dataset = scan_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    notes = []
    if dataset is not None and not same_file(table, dataset):
        if dataset.examples is None:  # its records are needed now, to find the scored ones by content
            dataset = read_dataset(dataset.path, dataset.format)
        table, note = align(table, dataset, str(scores) if isinstance(scores, (str, Path)) else "the scores")
        notes += [note] if note else []
    filtered, dropped = apply_filters(table, conditions, keep=~removed)
    dropped = {**dropped_first, **dropped}
    candidates = filtered
    if pool_size is not None:
        best = TopK(by=by, ascending=settings.ascending).select(table.take(filtered), pool_size)
        candidates = filtered[np.sort(best)]
        dropped[f"outside the pool (the best {settings.pool} by {by})"] = len(filtered) - len(candidates)
    cache_dir = settings.cache_dir or (Path(str(scores) + ".cache") if isinstance(scores, (str, Path)) else None)
    vectors, made_by = _candidate_vectors(selector, table, candidates, scores, dataset,
                                          vectors_in if vectors_in is not None else settings.embeddings, cache_dir)
    if selector.needs_records and len(candidates):
        _give_records(selector, table, candidates, dataset, cache_dir)
    chosen = selector.select(table.take(candidates), min(requested, len(candidates)),
                             vectors) if len(candidates) else np.array([], int)
    order = table.column("row").to_numpy()[candidates[chosen]]
    notes += list(getattr(selector, "notes_", []))
    if by is None and not selector.needs_records:  # a model in the loop chooses by its own measure
        notes.append(f"no ranking column: {settings.strategy} chose by coverage alone (ties in input order)")
    if len(filtered) < requested:
        notes.append(f"selected {len(order)} of the {requested} asked for: "
                     f"{n_left - len(filtered)} of {n_left} scored records were filtered out"
                     + (f" ({table.num_rows - n_left} more removed before selection)" if n_left < table.num_rows
                        else ""))
    params = {"strategy": settings.strategy, "by": by, "ascending": settings.ascending,
              "budget": str(settings.budget), "budget_count": requested, "max_ifd": max_ifd,
              "min_ifd": settings.min_ifd, "where": list(settings.where),
              "pool": None if settings.pool is None else str(settings.pool),
              **{k: v for k, v in strategy_options.items() if v is not None},
              **({"embeddings": made_by} if made_by else {})}
    return Selection(np.sort(order), requested, dropped, params, notes, getattr(selector, "stats_", {}), order)


def build_selector(strategy: str, options: dict) -> Selector:
    """The strategy with the options given to it (`tau`, or `deita.tau`), checked; an option it
    does not declare is an error naming those it takes. Nothing is read or loaded. None means
    "the strategy's default"."""
    if strategy not in SELECTORS:
        raise OptionError(f"unknown strategy {strategy!r}{did_you_mean(strategy, SELECTORS)}; "
                          f"valid strategies: {', '.join(sorted(SELECTORS))}")
    plain, scoped = split_scoped({k: v for k, v in options.items() if v is not None})
    accepted = sorted(o.name for o in declared(SELECTORS[strategy]))
    others = sorted(set(plain) - set(accepted)) + [f"{owner}.{name}" for owner, given in scoped.items()
                                                   if owner != strategy for name in given]
    unknown = others or sorted(set(scoped.get(strategy, {})) - set(accepted))
    if unknown:
        raise OptionError(f"option {', '.join(unknown)} does not apply to strategy {strategy!r}"
                          f"{did_you_mean(unknown[0], accepted)} (it takes: {', '.join(accepted) or 'no options'})")
    selector = make_selector(strategy, **plain, **scoped.get(strategy, {}))
    selector.check()
    return selector


def ranking_column(by: str | None, columns: list[str], strategy: str) -> str | None:
    """`by` checked against the columns; by default `ifd`, or None (coverage alone) for a
    strategy that can choose without a ranking."""
    if by is not None:
        if by not in columns:
            raise OptionError(f"by={by!r} is not a column of the scores; columns: {', '.join(columns)}")
        return by
    for default in (getattr(SELECTORS[strategy], "default_by", None), "ifd"):
        if default in columns:
            return default
    if getattr(SELECTORS[strategy], "needs_ranking", False):
        raise OptionError(f"strategy {strategy!r} ranks by a score column and the scores have no 'ifd': "
                          f"pass by= (--by) one of {', '.join(columns)}")
    return None


def pool_count(pool, by: str | None, n: int, requested: int) -> int | None:
    if pool is None:
        return None
    if by is None:
        raise OptionError(f"pool={pool!r} keeps the best-ranked records, but nothing ranks them: pass by= (--by)")
    count = parse_budget(pool, n)
    if count < requested:
        raise OptionError(f"pool={pool!r} keeps {count} records, fewer than the budget of {requested}")
    return count


def _candidate_vectors(selector: Selector, table: pa.Table, candidates: np.ndarray, scores,
                       dataset: Dataset | None, embeddings, cache_dir: Path | None) -> tuple[np.ndarray | None, dict]:
    """The vectors of the candidates (table positions) if the strategy needs them (else None),
    made as its `embedding()` says, and what made them (embedder, revision, text, dtype, tokens
    read: for the manifest). The selector gets `embed_`, to embed other records (a seed set)
    the same way."""
    if not selector.needs_embeddings or not len(candidates):  # nothing to read or make
        return None, {}
    if isinstance(embeddings, np.ndarray):
        if embeddings.ndim != 2 or len(embeddings) != table.num_rows:
            raise DataError(f"embeddings of shape {embeddings.shape} do not match the {table.num_rows} "
                            "rows of the scores (expected one vector per row, in table order)")
        vectors, meta = embeddings[candidates], {}
    else:
        path = Path(embeddings) if embeddings is not None else default_path(scores)
        embedder, text, max_length = selector.embedding()  # pre_experience: the LM's; facility: 512 tokens
        if (embedder or max_length) and path is not None:  # its own file, beside the scores' embeddings
            name = re.sub(r"[^\w.-]+", "_", embedder or DEFAULT_EMBEDDER) + (f"-len{max_length}" if max_length else "")
            path = sibling(path, f"-{name}.parquet")
        vectors, meta = table_vectors(table, candidates, path, _records_of(dataset), selector.name, embedder, text,
                                      cache_dir, max_length)
    selector.embed_ = functools.partial(embed_records, meta=meta)
    return vectors, {key: meta[key] for key in ("model", "revision", "text", "dtype", "max_length") if key in meta}


def _give_records(selector: Selector, table: pa.Table, candidates: np.ndarray, dataset: Dataset | None,
                  cache_dir: Path | None) -> None:
    """A model-in-the-loop strategy's inputs: the candidates' records, in table order, and a
    folder of its own for the stages it caches."""
    if dataset is None:
        raise OptionError(f"strategy {selector.name!r} reads the records: pass the data file (`sftpick select DATA "
                          "…`, `data=`)")
    by_row = {e.row: e for e in _records_of(dataset)()}
    rows = table.column("row").to_numpy()[candidates]
    missing = [int(r) for r in rows if int(r) not in by_row]
    if missing:
        raise DataError(f"the data file has no record at row {missing[0]} of the scores: is it the file that was scored?")
    selector.records_ = [by_row[int(r)] for r in rows]
    folder = selector.workdir_name or selector.name
    selector.workdir_ = (Path(cache_dir) / "strategies" / folder if cache_dir is not None
                         else Path(tempfile.mkdtemp(prefix=f"sftpick-{selector.name}-")))
    selector.workdir_.mkdir(parents=True, exist_ok=True)


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


@dataclass(kw_only=True)
class SubsetSettings:
    """`sftpick select`: the scored input, its scores, and the subset to write."""

    data: Path = option(help="Input records: .json (array), .jsonl or .parquet.", argument=True)
    scores: Path = option(help="Scores table from `sftpick score`.")
    output: Path = option(help="Subset, same format as the input.", flags=("-o", "--output"))
    order: str = option("input", "Order of the subset: input | pick (the strategy's pick order, best first).",
                        choices=ORDERS)
    fmt: str | None = option(None, "alpaca | sharegpt | openai (default: detect).", flags=("--format",),
                             choices=FORMATS)


def select_subset(data: str | Path, scores: str | Path, output: str | Path, **options) -> tuple[Selection, Path]:
    """`select` on a scores file, then the chosen records of `data` written to `output` in its
    own format, with a manifest beside it (`X.manifest.json`); returns the selection and the
    manifest's path. `options`: the settings of `SubsetSettings` and `SelectSettings`, and the
    strategy's options."""
    subset, options = settings_from(SubsetSettings, {"data": data, "scores": scores, "output": output, **options})
    dataset = scan_dataset(subset.data, subset.fmt)  # the records are read only if they must be matched by content
    selection = select(subset.scores, data=dataset, **options)
    write_subset(dataset, selection.order, subset.output, order=subset.order)
    manifest = sibling(subset.output, ".manifest.json")
    atomic_write(manifest, json.dumps(selection_manifest(dataset, subset.scores, selection, subset.output), indent=2,
                                      default=str))
    return selection, manifest


def selection_manifest(dataset: Dataset, scores: str | Path, selection: Selection, subset: str | Path) -> dict:
    """What `select` wrote and from what: the data file, the scores (with their run id), the
    selection's parameters, drops, notes and figures."""
    return {**manifest_header(),
            "input": {"path": str(dataset.path.resolve()), "sha256": dataset.sha256, "format": dataset.format},
            "scores": {"path": str(Path(scores).resolve()), "sha256": file_sha256(scores),
                       "run_id": table_meta(pq.read_schema(scores)).get("run_id")},
            "subset": {"file": str(subset), "sha256": file_sha256(subset)},
            "counts": {"selected": int(len(selection.rows)), "requested": selection.requested},
            "selection": {**selection.params, "dropped": selection.dropped, "notes": selection.notes,
                          "stats": selection.stats}}
