"""One self-contained HTML page for a run folder: what came in, what was scored, rejected and
selected, how every score is distributed, selected against not, the best and worst records
by the ranking score, and the manifest. plotly's JS is inlined, so the page needs no
network; all dataset text is HTML-escaped (plot data goes through plotly's JSON encoder,
which escapes `<`, `>` and `/`)."""
from __future__ import annotations

import json
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..embeddings import embeddings_path
from ..examples import Example, to_example
from ..io import KINDS, Source, parquet_rows, raw_texts
from ..provenance import HASH, DataMismatch, rows_by_content, verify_run
from ..stats import dominant_value
from ..writers import atomic_write, file_sha256, output_lock, read_parquet, remove_stale_temps
from .figures import distributions, embedding_map, scatter_by, score_columns, selected
from .html import cut, escape, figure_html, page

N_EXAMPLES = 5  # best and worst records shown
COLLAPSE_SHARE = 0.5  # one value holding this share of a score column is warned about
COLLAPSE_MIN_RECORDS = 20  # fewer records say nothing about collapse


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
        table = read_parquet(scores_path) if table is None or manifest is None else table
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
        f"<h1>sftpick report: {escape(run_dir.resolve().name)}</h1>",
        *(f'<p class="note">{escape(n)}</p>' for n in notes),
        "<h2>Records</h2>", _counts_html(manifest, table),
        *(["<h2>Removed before selection</h2>", _removed_html(manifest, table)] if _removed(table) else []),
        "<h2>Scorers</h2>", _scorers_html(manifest),
        "<h2>Score distributions</h2>", figure_html(distributions(table)),
        "<h2>Selected vs not</h2>", figure_html(scatter_by(table, by)),
        "<h2>Embedding space</h2>", figure_html(embedding_map(table, embeddings_path(run_dir / "scores.parquet")),
                                                "no embeddings were made in this run (a kNN scorer or a diversity "
                                                "strategy makes them)."),
        f"<h2>Best and worst by {escape(by)}</h2>", _examples_html(table, texts, by, ascending, shown),
        "<h2>Manifest</h2>", f'<pre class="manifest">{escape(json.dumps(manifest, indent=2, default=str))}</pre>',
    ]
    return page(f"sftpick report: {run_dir.name}", "\n".join(body), run_id=manifest.get("run_id"))


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
    contents = list(dict.fromkeys(hashes))  # a record shown twice needs its text once
    records = (e for chunk in Source(path, manifest["input"].get("format")).chunks() for e in chunk.examples)
    at = dict(zip(contents, rows_by_content(contents, records).tolist()))
    missing = [row for row, content in zip(rows, hashes) if at[content] < 0]
    if missing:
        raise DataMismatch(f"{path} is not the file {scores_path} were computed from: the scored record at "
                           f"row {missing[0]} is not in it")
    examples = _examples_at(Path(path), manifest["input"].get("format"), sorted(set(at.values())))
    texts = {row: _texts(examples[at[content]]) for row, content in zip(rows, hashes)}
    moved = any(at[content] != row for row, content in zip(rows, hashes))
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
        by = score_columns(table)[0] if score_columns(table) else "row"
    return by, bool(selection.get("ascending", False))


def _counts_html(manifest: dict, table: pa.Table) -> str:
    counts = manifest.get("counts") or {"scored": table.num_rows, "selected": int(selected(table).sum())}
    rows = [(key, counts[key]) for key in ("input", "scored", "rejected") if key in counts]
    rows += [(f"rejected: {reason}", n) for reason, n in counts.get("rejected_by_reason", {}).items()]
    rows += [(f"dropped before ranking: {reason}", n)
             for reason, n in manifest.get("selection", {}).get("dropped", {}).items()]
    rows += [("selected", counts["selected"])] if "selected" in counts else []
    cells = "".join(f'<tr><th>{escape(k)}</th><td class="n">{escape(v)}</td></tr>' for k, v in rows)
    return f'<table id="counts">{cells}</table>'


def _removed(table: pa.Table) -> bool:
    return "removed" in table.column_names and table.column("removed").null_count < table.num_rows


def _removed_html(manifest: dict, table: pa.Table, per_reason: int = 3) -> str:
    """A few removed records of each reason, side by side with what they duplicate: the kept
    twin (from the input) or the matched test record (from the test file)."""
    from ..curation.stage import test_records

    reasons = table.column("removed").to_pylist()
    rows = table.column("row").to_numpy()
    twins, matched = table.column("duplicate_of").to_pylist(), table.column("matched").to_pylist()
    shown = {}
    for i, reason in enumerate(reasons):
        if reason is not None and len(shown.setdefault(reason, [])) < per_reason:
            shown[reason].append(i)
    wanted = sorted({int(rows[i]) for ii in shown.values() for i in ii} | {twins[i] for ii in shown.values()
                                                                            for i in ii if twins[i] is not None})
    texts = _input_texts(manifest, wanted)
    tests = {}
    for value in (matched[i] for ii in shown.values() for i in ii if matched[i] is not None):
        path = value.rpartition(" row ")[0]
        if path not in tests:
            tests[path] = {r: t for _, r, t in test_records([Path(path)])} if Path(path).is_file() else {}
    parts = []
    for reason, indices in shown.items():
        parts.append(f"<h3>{escape(reason)}</h3>")
        for i in indices:
            row = int(rows[i])
            if matched[i] is not None:
                path, _, test_row = matched[i].rpartition(" row ")
                other = ("test record " + matched[i], tests.get(path, {}).get(int(test_row)))
            else:
                other = (f"kept: row {twins[i]}", _joined(texts.get(twins[i])))
            parts.append(_side_by_side((f"removed: row {row}", _joined(texts.get(row))), other))
    return "\n".join(parts)


def _input_texts(manifest: dict, rows: list[int]) -> dict[int, tuple[str, str]]:
    """The texts of input rows, when the input file is the one scored (else none: not shown)."""
    path = manifest.get("input", {}).get("path")
    if not rows or not path or not Path(path).is_file() or file_sha256(path) != manifest["input"].get("sha256"):
        return {}
    return {row: _texts(e) for row, e in _examples_at(Path(path), manifest["input"].get("format"), rows).items()}


def _joined(texts: tuple[str, str] | None) -> str | None:
    return None if texts is None else "\n\n".join(t for t in texts if t)


def _side_by_side(left: tuple[str, str | None], right: tuple[str, str | None]) -> str:
    cells = "".join(f'<td><div class="meta">{escape(label)}</div>'
                    + (f"<pre>{escape(cut(text))}</pre>" if text is not None else "<p><i>text not available</i></p>")
                    + "</td>" for label, text in (left, right))
    return f'<table class="pair"><tr>{cells}</tr></table>'


def collapse_warnings(table: pa.Table, share: float = COLLAPSE_SHARE) -> list[str]:
    """A warning for each score column where one value holds at least `share` of the records:
    a judge or rating model that gives (nearly) everything the same rating (deita#36)."""
    warnings = []
    for name in score_columns(table):
        values = table.column(name).to_numpy(zero_copy_only=False).astype(float)
        found = dominant_value(Counter(values[np.isfinite(values)].tolist()), share=share,
                               at_least=COLLAPSE_MIN_RECORDS)
        if found:
            value, n, total = found
            warnings.append(f"{name}: {n / total:.0%} of the {total} records have the value {value:g}; a rating "
                            "that collapses to one value cannot rank them (check the judge's prompt and model).")
    return warnings


def _scorers_html(manifest: dict) -> str:
    """Per scorer: time, records scored now and from the cache, and what it counted (retries,
    parse failures, recall of an approximate index, …)."""
    scorers = manifest.get("timings", {}).get("scorers", {})
    if not scorers:
        return '<p class="note">the manifest holds no scorer timings.</p>'
    rows = "".join(f"<tr><th>{escape(name)}</th><td>{escape(', '.join(f'{k} = {v}' for k, v in stats.items()))}</td></tr>"
                   for name, stats in scorers.items())
    return f'<table id="scorers">{rows}</table>'


def _best_and_worst(table: pa.Table, by: str, ascending: bool, n: int) -> tuple[list[int], list[int]]:
    """Table positions of the best: the top of the ranking among the selected (or all rows
    when nothing was selected); and of the worst: the bottom of the ranking among all rows."""
    score = table.column(by).to_numpy(zero_copy_only=False).astype(float)
    key = score if ascending else -score
    order = np.argsort(key, kind="stable")
    order = order[np.isfinite(score[order])]
    best = order[selected(table)[order]]
    best = best if len(best) else order
    return best[:n].tolist(), order[::-1][:n].tolist()


def _examples_html(table: pa.Table, texts: dict, by: str, ascending: bool,
                   shown: tuple[list[int], list[int]]) -> str:
    best, worst = shown
    chosen = selected(table)
    parts = [f"<h3>Best {len(best)} ({'lowest' if ascending else 'highest'} {escape(by)}"
             f"{' among the selected' if chosen.any() else ''})</h3>"]
    parts += [_card(table, texts, i, by) for i in best]
    parts += [f"<h3>Worst {len(worst)} ({'highest' if ascending else 'lowest'} {escape(by)})</h3>"]
    parts += [_card(table, texts, i, by) for i in worst]
    return "\n".join(parts)


def _card(table: pa.Table, texts: dict, index: int, by: str) -> str:
    record = {name: table.column(name)[index].as_py() for name in table.column_names}
    meta = f"row {record['row']} · id {record.get('id')} · {by} = {record[by]:.4g}"
    if record.get("selected"):
        meta += " · selected"
    if record["row"] not in texts:
        return f'<div class="card"><div class="meta">{escape(meta)}</div><p><i>text not available</i></p></div>'
    context, response = texts[record["row"]]
    return (f'<div class="card"><div class="meta">{escape(meta)}</div>'
            f"<b>instruction</b><pre>{escape(cut(context))}</pre><b>response</b><pre>{escape(cut(response))}</pre></div>")
