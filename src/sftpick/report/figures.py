"""The report's figures (plotly): score distributions, the ranking score against length, the
embedding space; each reads only the rows it draws."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..embeddings import load_embeddings

NOT_SCORES = {"row", "id", "selected", "rank", "duplicate_of"}
WEBGL_FROM = 5000  # rows from which the scatter is drawn with WebGL
MAX_POINTS = 20000  # not-selected points drawn in the scatter (all selected ones are)
BINS = 40
LOG_SPREAD = 100  # p99 / p1 of a positive column above this: its histogram is drawn in log10


def score_columns(table: pa.Table) -> list[str]:
    return [f.name for f in table.schema
            if f.name not in NOT_SCORES and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]


def selected(table: pa.Table) -> np.ndarray:
    if "selected" in table.column_names:
        return table.column("selected").to_numpy(zero_copy_only=False).astype(bool)
    return np.zeros(table.num_rows, dtype=bool)


def histogram_values(values: np.ndarray, name: str) -> tuple[np.ndarray, str]:
    """Values as drawn: log10 for perplexity-like columns (positive, spanning orders of
    magnitude), where one outlier would otherwise squeeze the rest into a single bar."""
    finite = values[np.isfinite(values)]
    spread = len(finite) and finite.min() > 0 and np.percentile(finite, 99) > LOG_SPREAD * np.percentile(finite, 1)
    if name.startswith("ppl") or spread:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(values), f"{name} (log10)"
    return values, name


def distributions(table: pa.Table):
    """One histogram per score column, selected and not overlaid."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    columns = score_columns(table)
    if not columns:
        return None
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    drawn = [histogram_values(table.column(name).to_numpy(zero_copy_only=False).astype(float), name)
             for name in columns]
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[title for _, title in drawn])
    chosen = selected(table)
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


def scatter_by(table: pa.Table, by: str):
    """The ranking score against response length (or row), selected vs not."""
    import plotly.graph_objects as go

    if by not in table.column_names:
        return None
    x_name = "n_response_tokens" if "n_response_tokens" in table.column_names else "row"
    x = table.column(x_name).to_numpy(zero_copy_only=False)
    y = table.column(by).to_numpy(zero_copy_only=False)
    has_ids = "id" in table.column_names
    chosen = selected(table)
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


def embedding_map(table: pa.Table, path: Path):
    """The records' embeddings projected on their first two principal components, selected
    against not: how a person checks that a subset covers the data."""
    import plotly.graph_objects as go

    if not path.is_file():
        return None
    rows, chosen = table.column("row").to_numpy(), selected(table)
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
