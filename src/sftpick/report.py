"""One self-contained HTML page for a run folder: what came in, what was scored, rejected and
selected, how every score is distributed, selected against not, the best and worst records
by the ranking score, and the manifest. plotly's JS is inlined, so the page needs no
network; all dataset text is HTML-escaped (plot data goes through plotly's JSON encoder,
which escapes `<`, `>` and `/`)."""
from __future__ import annotations

import html
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .embeddings import embeddings_path, load_embeddings
from .examples import Example, to_example
from .io import KINDS, Source, raw_texts
from .writers import parquet_rows, atomic_write, file_sha256, output_lock, remove_stale_temps
from .provenance import HASH, DataMismatch, verify_run

N_EXAMPLES = 5  # best and worst records shown
MAX_CHARS = 1200  # text shown per field; the rest is cut with a note
NOT_SCORES = {"row", "id", "selected", "rank"}
WEBGL_FROM = 5000  # rows from which the scatter is drawn with WebGL
MAX_POINTS = 20000  # not-selected points drawn in the scatter (all selected ones are)
BINS = 40
COLLAPSE_SHARE = 0.5  # one value holding this share of a score column is warned about
COLLAPSE_MIN_RECORDS = 20  # fewer records say nothing about collapse
LOG_SPREAD = 100  # p99 / p1 of a positive column above this: its histogram is drawn in log10

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff6d6;border-left:4px solid #e0b400;padding:.4rem .8rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
.card pre,pre.manifest{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;margin:.3rem 0}
.meta{color:#555;font-size:.9em}
"""


def build_report(run_dir: str | Path, output: str | Path | None = None, *, manifest: dict | None = None,
                 examples: int = N_EXAMPLES, table: pa.Table | None = None) -> Path:
    """Write `report.html` (or `output`) for the run in `run_dir`, showing the `examples`
    best and worst records; returns its path. Without `manifest` (the one a run is about to
    write), the folder must be whole: its manifest vouches for the files it reads. `table`:
    the scores a run has just written, so they are not read back (with `manifest` only)."""
    run_dir = Path(run_dir)
    scores_path = run_dir / "scores.parquet"
    if not scores_path.is_file():
        raise FileNotFoundError(f"{scores_path}: no such file; is {run_dir} the output folder of `sftpick run`?")
    path = Path(output) if output else run_dir / "report.html"
    with output_lock(run_dir / ".lock") if manifest is None else nullcontext():
        if manifest is None:
            manifest = verify_run(run_dir)
            remove_stale_temps(path.parent, path.name)
        table = pq.read_table(scores_path) if table is None or manifest is None else table
        by, ascending = _ranking(manifest, table)
        best, worst = _best_and_worst(table, by, ascending, examples)
        texts, note = _dataset_texts(manifest, table, scores_path, sorted(set(best + worst)))
        atomic_write(path, _page_for(run_dir, manifest, table, texts, [note] if note else [], (best, worst)))
    return path


def _page_for(run_dir: Path, manifest: dict, table: pa.Table, texts: dict, notes: list[str],
              shown: tuple[list[int], list[int]]) -> str:
    by, ascending = _ranking(manifest, table)
    notes = notes + collapse_warnings(table)
    body = [
        f"<h1>sftpick report: {_e(run_dir.resolve().name)}</h1>",
        *(f'<p class="note">{_e(n)}</p>' for n in notes),
        "<h2>Records</h2>", _counts_html(manifest, table),
        "<h2>Scorers</h2>", _scorers_html(manifest),
        "<h2>Score distributions</h2>", _figure_html(_distributions(table)),
        "<h2>Selected vs not</h2>", _figure_html(_scatter(table, by)),
        "<h2>Embedding space</h2>", _figure_html(_embedding_map(table, embeddings_path(run_dir / "scores.parquet")),
                                                 "no embeddings were made in this run (a kNN scorer or a diversity "
                                                 "strategy makes them)."),
        f"<h2>Best and worst by {_e(by)}</h2>", _examples_html(table, texts, by, ascending, shown),
        "<h2>Manifest</h2>", f'<pre class="manifest">{_e(json.dumps(manifest, indent=2))}</pre>',
    ]
    return _page(f"sftpick report: {run_dir.name}", "\n".join(body), run_id=manifest.get("run_id"))


# ---------------------------------------------------------------- inputs

def _dataset_texts(manifest: dict, table: pa.Table, scores_path: Path,
                   shown: list[int]) -> tuple[dict[int, tuple[str, str]], str | None]:
    """Table row -> (context, response) for the `shown` table positions only, read as a stream
    from the input file the manifest names. The file as scored (same sha256) is read by row; a
    file that changed since the run is searched by content, with a note; one that lacks a shown
    record is refused (DataMismatch), never shown beside scores that are not its own."""
    path = manifest.get("input", {}).get("path")
    if not path:
        return {}, "the manifest names no input file, so record texts are not shown."
    if not Path(path).is_file():
        return {}, f"record texts are not shown: the input file {path} is gone."
    rows = table.column("row").take(pa.array(shown, type=pa.int64())).to_pylist()
    hashes = (table.column(HASH).take(pa.array(shown, type=pa.int64())).to_pylist() if HASH in table.column_names
              else [None] * len(rows))
    if file_sha256(path) == manifest["input"].get("sha256"):  # the file as scored: read only the shown rows
        fmt = manifest["input"].get("format")
        return {row: _texts(example) for row, example in _examples_at(Path(path), fmt, rows).items()}, None
    by_hash = {}
    wanted = set(hashes)
    for chunk in Source(path, manifest["input"].get("format")).chunks():
        for example in chunk.examples:
            if example.content_hash in wanted:
                by_hash.setdefault(example.content_hash, example)
    texts, moved = {}, False
    for row, content in zip(rows, hashes):
        if content not in by_hash:
            raise DataMismatch(f"{path} is not the file {scores_path} were computed from: the scored record at "
                               f"row {row} is not in it")
        texts[row], moved = _texts(by_hash[content]), moved or by_hash[content].row != row
    note = f"{path} differs from the scored file; its records were matched to the scores by content" if moved else None
    return texts, note


def _examples_at(path: Path, fmt: str | None, rows: list[int]) -> dict[int, Example]:
    """The examples at `rows` of an input file, parsing only those records."""
    kind = KINDS[path.suffix.lower()]
    if kind == "parquet":
        table = parquet_rows(path, np.array(rows, dtype=np.int64))
        return {row: to_example(record, row, fmt) for row, record in zip(rows, table.to_pylist())}
    texts = raw_texts(path, kind, np.array(rows, dtype=np.int64))
    return {row: to_example(json.loads(text), row, fmt) for row, text in texts.items()}


def _texts(example: Example) -> tuple[str, str]:
    return "\n\n".join(m["content"] for m in example.context), example.response


def _ranking(manifest: dict, table: pa.Table) -> tuple[str, bool]:
    selection = manifest.get("selection", {})
    by = selection.get("by", "ifd")
    if by not in table.column_names:
        by = _score_columns(table)[0] if _score_columns(table) else "row"
    return by, bool(selection.get("ascending", False))


def _score_columns(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema
            if f.name not in NOT_SCORES and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]


def _selected(table: pa.Table) -> np.ndarray:
    if "selected" in table.column_names:
        return table.column("selected").to_numpy(zero_copy_only=False).astype(bool)
    return np.zeros(table.num_rows, dtype=bool)


# ---------------------------------------------------------------- sections

def _counts_html(manifest: dict, table: pa.Table) -> str:
    counts = manifest.get("counts") or {"scored": table.num_rows, "selected": int(_selected(table).sum())}
    rows = [(key, counts[key]) for key in ("input", "scored", "rejected") if key in counts]
    rows += [(f"rejected: {reason}", n) for reason, n in counts.get("rejected_by_reason", {}).items()]
    rows += [(f"dropped before ranking: {reason}", n)
             for reason, n in manifest.get("selection", {}).get("dropped", {}).items()]
    rows += [("selected", counts["selected"])] if "selected" in counts else []
    cells = "".join(f'<tr><th>{_e(k)}</th><td class="n">{_e(v)}</td></tr>' for k, v in rows)
    return f'<table id="counts">{cells}</table>'


def collapse_warnings(table: pa.Table, share: float = COLLAPSE_SHARE) -> list[str]:
    """A warning for each score column where one value holds at least `share` of the records:
    a judge or rating model that gives (nearly) everything the same rating (deita#36)."""
    warnings = []
    for name in _score_columns(table):
        values = table.column(name).to_numpy(zero_copy_only=False).astype(float)
        values = values[np.isfinite(values)]
        if len(values) < COLLAPSE_MIN_RECORDS:
            continue
        distinct, counts = np.unique(values, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] >= share * len(values):
            warnings.append(f"{name}: {counts[top] / len(values):.0%} of the {len(values)} records have the value "
                            f"{distinct[top]:g}; a rating that collapses to one value cannot rank them "
                            "(check the judge's prompt and model).")
    return warnings


def _scorers_html(manifest: dict) -> str:
    """Per scorer: time, records scored now and from the cache, and what it counted (retries,
    parse failures, recall of an approximate index, …)."""
    scorers = manifest.get("timings", {}).get("scorers", {})
    if not scorers:
        return '<p class="note">the manifest holds no scorer timings.</p>'
    rows = "".join(f"<tr><th>{_e(name)}</th><td>{_e(', '.join(f'{k} = {v}' for k, v in stats.items()))}</td></tr>"
                   for name, stats in scorers.items())
    return f'<table id="scorers">{rows}</table>'


def _histogram_values(values: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """Values as drawn: log10 for perplexity-like columns (positive, spanning orders of
    magnitude), where one outlier would otherwise squeeze the rest into a single bar."""
    finite = values[np.isfinite(values)]
    spread = len(finite) and finite.min() > 0 and np.percentile(finite, 99) > LOG_SPREAD * np.percentile(finite, 1)
    if name.startswith("ppl") or spread:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(values), f"{name} (log10)"
    return values, name


def _distributions(table: pa.Table):
    """One histogram per score column, selected and not overlaid."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    columns = _score_columns(table)
    if not columns:
        return None
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    drawn = [_histogram_values(table.column(name).to_numpy(zero_copy_only=False).astype(float), name)
             for name in columns]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[title for _, title in drawn])
    chosen = _selected(table)
    for i, (values, _) in enumerate(drawn):
        finite = np.isfinite(values)
        edges = np.histogram_bin_edges(values[finite], bins=BINS) if finite.any() else np.array([0.0, 1.0])
        for label, mask, color in (("not selected", ~chosen, "#9aa5b1"), ("selected", chosen, "#d9480f")):
            counts, _ = np.histogram(values[mask & finite], bins=edges)  # binned here: page size does not grow with rows
            fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=label,
                                 legendgroup=label, marker_color=color, opacity=0.75, showlegend=i == 0),
                          row=i // ncols + 1, col=i % ncols + 1)
    fig.update_layout(barmode="overlay", height=260 * nrows, margin=dict(t=40, b=30, l=40, r=10))
    return fig


def _scatter(table: pa.Table, by: str):
    """The ranking score against response length (or row), selected vs not."""
    import plotly.graph_objects as go

    if by not in table.column_names:
        return None
    x_name = "n_response_tokens" if "n_response_tokens" in table.column_names else "row"
    x = table.column(x_name).to_numpy(zero_copy_only=False)
    y = table.column(by).to_numpy(zero_copy_only=False)
    has_ids = "id" in table.column_names
    chosen = _selected(table)
    shown = _thin(~chosen, MAX_POINTS)
    scatter = go.Scattergl if table.num_rows > WEBGL_FROM else go.Scatter  # SVG is slow for many points
    fig = go.Figure()
    for label, mask, color in (("not selected", shown, "#9aa5b1"), ("selected", chosen, "#d9480f")):
        fig.add_trace(scatter(x=x[mask], y=y[mask], mode="markers", name=label, marker_color=color,
                                   marker_size=5, opacity=0.7,
                                   text=[str(i) for i in table.column("id").take(pa.array(np.flatnonzero(mask)))
                                         .to_pylist()] if has_ids else None,
                                   hovertemplate="id %{text}<br>" + x_name + " %{x}<br>" + by + " %{y:.4g}"))
    title = f"not selected: a random {shown.sum()} of {(~chosen).sum()} shown" if shown.sum() < (~chosen).sum() else None
    fig.update_layout(xaxis_title=x_name, yaxis_title=by, height=420, title=title,
                      margin=dict(t=40 if title else 20, b=40, l=50, r=10))
    return fig


def _embedding_map(table: pa.Table, path: Path):
    """The records' embeddings projected on their first two principal components, selected
    against not: how a person checks that a subset covers the data."""
    import plotly.graph_objects as go

    if not path.is_file():
        return None
    rows, chosen = table.column("row").to_numpy(), _selected(table)
    shown = chosen | _thin(~chosen, MAX_POINTS)  # only these rows' vectors are read, in blocks
    cached_rows, vectors, meta = load_embeddings(path, rows[shown])
    at = {int(r): i for i, r in enumerate(cached_rows)}
    present = np.array([int(r) in at for r in rows[shown]], dtype=bool)
    if present.sum() < 3:
        return None
    x = vectors[[at[int(r)] for r in rows[shown][present]]].astype(np.float64)
    x -= x.mean(axis=0)
    _, _, components = np.linalg.svd(x[_thin(np.ones(len(x), bool), MAX_POINTS)], full_matrices=False)
    xy = x @ components[:2].T
    chosen = chosen[shown][present]
    shown = ~chosen
    scatter = go.Scattergl if len(xy) > WEBGL_FROM else go.Scatter
    fig = go.Figure([scatter(x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=label, marker_color=color,
                             marker_size=5, opacity=0.7)
                     for label, mask, color in (("not selected", shown, "#9aa5b1"), ("selected", chosen, "#d9480f"))])
    fig.update_layout(xaxis_title="PC 1", yaxis_title="PC 2", height=460, margin=dict(t=40, b=40, l=50, r=10),
                      title=f"{meta.get('model', 'embeddings')}: first two principal components")
    return fig


def _thin(mask: np.ndarray, limit: int) -> np.ndarray:
    """`mask` with at most `limit` True entries, the kept ones drawn with a fixed seed."""
    where = np.flatnonzero(mask)
    if len(where) <= limit:
        return mask
    kept = np.zeros_like(mask)
    kept[np.random.default_rng(0).choice(where, limit, replace=False)] = True
    return kept


def _best_and_worst(table: pa.Table, by: str, ascending: bool, n: int) -> tuple[list[int], list[int]]:
    """Table positions of the best: the top of the ranking among the selected (or all rows
    when nothing was selected); and of the worst: the bottom of the ranking among all rows."""
    score = table.column(by).to_numpy(zero_copy_only=False).astype(float)
    key = score if ascending else -score
    order = np.argsort(key, kind="stable")
    order = order[np.isfinite(score[order])]
    best = order[_selected(table)[order]]
    best = best if len(best) else order
    return best[:n].tolist(), order[::-1][:n].tolist()


def _examples_html(table: pa.Table, texts: dict, by: str, ascending: bool,
                   shown: tuple[list[int], list[int]]) -> str:
    best, worst = shown
    chosen = _selected(table)
    parts = [f"<h3>Best {len(best)} ({'lowest' if ascending else 'highest'} {_e(by)}"
             f"{' among the selected' if chosen.any() else ''})</h3>"]
    parts += [_card(table, texts, i, by) for i in best]
    parts += [f"<h3>Worst {len(worst)} ({'highest' if ascending else 'lowest'} {_e(by)})</h3>"]
    parts += [_card(table, texts, i, by) for i in worst]
    return "\n".join(parts)


def _card(table: pa.Table, texts: dict, index: int, by: str) -> str:
    record = {name: table.column(name)[index].as_py() for name in table.column_names}
    meta = f"row {record['row']} · id {record.get('id')} · {by} = {record[by]:.4g}"
    if record.get("selected"):
        meta += " · selected"
    if record["row"] not in texts:
        return f'<div class="card"><div class="meta">{_e(meta)}</div><p><i>text not available</i></p></div>'
    context, response = texts[record["row"]]
    return (f'<div class="card"><div class="meta">{_e(meta)}</div>'
            f"<b>instruction</b><pre>{_e(_cut(context))}</pre><b>response</b><pre>{_e(_cut(response))}</pre></div>")


# ---------------------------------------------------------------- html

def _figure_html(fig, missing: str = "no numeric score column to plot.") -> str:
    if fig is None:
        return f'<p class="note">{_e(missing)}</p>'
    return f'<div class="plot">{fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})}</div>'


def _page(title: str, body: str, *, run_id: str | None = None) -> str:
    from plotly.offline import get_plotlyjs

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="sftpick-run-id" content="{_e(run_id or "")}">'
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n<body>\n{body}\n</body></html>\n")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + f"… [{len(text) - MAX_CHARS} more characters]"


def _e(value) -> str:
    return html.escape(str(value), quote=True)
