"""What an evaluation shows: per arm and eval set, the mean held-out loss over seeds and its
difference to the random arms' mean, with a 95% interval (Welch's t: the arm's seeds and
the random seeds are independent samples; an arm fine-tuned once takes the random arms'
spread as its own). Where an arm was fine-tuned with the same seeds as random (two or more),
the paired interval over the per-seed differences is given too: the same training seed
cancels part of the noise. And a self-contained HTML plot."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from ..writers import atomic_write


def summarize(result: dict) -> list[dict]:
    """One row per arm name (first-seen order): kind, sizes, and per eval set the loss
    mean, its interval over seeds, and the difference to random with its interval."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for arm in result["arms"]:
        by_name[arm["name"]].append(arm)
    sets = list(result["base"]["eval_loss"])
    rows = []
    for name, arms in by_name.items():
        row = {"name": name, "kind": arms[0]["kind"], "seeds": len(arms),
               "n_records": float(np.mean([a["n_records"] for a in arms])),
               "n_response_tokens": float(np.mean([a["n_response_tokens"] for a in arms])), "eval": {}}
        for s in sets:
            losses = np.array([a["eval_loss"][s] for a in arms])
            random = np.array([a["eval_loss"][s] for a in by_name.get("random", [])])
            reference = name == "random"
            row["eval"][s] = {"mean": float(losses.mean()), "ci95": mean_interval(losses),
                              "vs_random": None if not len(random) else float(losses.mean() - random.mean()),
                              "vs_random_ci95": None if reference else difference_interval(losses, random),
                              "vs_random_paired_ci95": None if reference else paired_interval(
                                  arms, by_name.get("random", []), s),
                              "reference": reference}
        if all("accuracy" in a for a in arms):
            row["accuracy"] = {task: {metric: float(np.mean([a["accuracy"][task][metric] for a in arms]))
                                      for metric in metrics} for task, metrics in arms[0]["accuracy"].items()}
        rows.append(row)
    return rows


def paired_interval(arms: list[dict], random: list[dict], eval_set: str) -> list[float] | None:
    """95% t interval of the mean per-seed difference to random, when both were fine-tuned
    with the same two or more seeds; else None."""
    mine = {a["seed"]: a["eval_loss"][eval_set] for a in arms}
    theirs = {a["seed"]: a["eval_loss"][eval_set] for a in random}
    if set(mine) != set(theirs) or len(mine) < 2:
        return None
    return mean_interval(np.array([mine[seed] - theirs[seed] for seed in sorted(mine)]))


def mean_interval(values: np.ndarray) -> list[float] | None:
    """95% t interval of the mean (statsmodels); None for fewer than 2 values."""
    if len(values) < 2:
        return None
    return [float(v) for v in DescrStatsW(values).tconfint_mean()]


def difference_interval(a: np.ndarray, b: np.ndarray) -> list[float] | None:
    """95% interval of mean(a) - mean(b), Welch (statsmodels); None with fewer than 2 values
    of `b`. One value of `a` (an arm fine-tuned once, `--fixed-seeds 1`) is given `b`'s
    variance, with t on len(b) - 1 degrees of freedom: conservative, since a random arm varies
    by draw and by training seed, a fixed arm by training seed alone."""
    if len(b) < 2 or len(a) < 1:
        return None
    if len(a) == 1:
        half = stats.t.ppf(0.975, len(b) - 1) * b.std(ddof=1) * np.sqrt(1 + 1 / len(b))
        diff = float(a[0] - b.mean())
        return [diff - half, diff + half]
    if a.var() + b.var() == 0:  # no spread at all: the interval is the difference itself
        diff = float(a.mean() - b.mean())
        return [diff, diff]
    return [float(v) for v in CompareMeans(DescrStatsW(a), DescrStatsW(b)).tconfint_diff(usevar="unequal")]


def write_html(result: dict, rows: list[dict], path: Path) -> Path:
    """Eval loss per arm (each seed a dot, the mean a bar), one panel per eval set, the base
    model as a dashed line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..report.html import escape, figure_html, page

    sets = list(result["base"]["eval_loss"])
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=sets)
    for col, s in enumerate(sets, start=1):
        names = [r["name"] for r in rows]
        fig.add_trace(go.Bar(x=names, y=[r["eval"][s]["mean"] for r in rows], name="mean over seeds",
                             marker_color="#9ecae1", showlegend=col == 1), row=1, col=col)
        arms = result["arms"]
        fig.add_trace(go.Scatter(x=[a["name"] for a in arms], y=[a["eval_loss"][s] for a in arms], mode="markers",
                                 name="one seed", marker={"color": "#08519c"}, showlegend=col == 1,
                                 text=[f"seed {a['seed']}, {a['n_response_tokens']:,} response tokens" for a in arms]),
                      row=1, col=col)
        fig.add_hline(y=result["base"]["eval_loss"][s], line_dash="dash", annotation_text="base model",
                      row=1, col=col)
        low = min([result["base"]["eval_loss"][s]] + [a["eval_loss"][s] for a in arms])
        fig.update_yaxes(range=[low * 0.95, None], title_text="held-out loss" if col == 1 else None, row=1, col=col)
    fig.update_layout(height=460, margin={"t": 60})
    body = (f"<h1>Held-out loss by training arm</h1><p>model {escape(result['base']['model'])} "
            f"({escape(result['base']['revision'])}); lower is better. A longer subset trains on more tokens: "
            "see the response tokens per arm in the table.</p>" + figure_html(fig) + _table_html(rows, sets)
            + _win_rate_html(result) + f"<h2>result.json</h2><pre class='manifest'>{escape(json.dumps(result, indent=2))}</pre>")
    atomic_write(path, page("sftpick eval", body))
    return path


def win_rate_figure(win_rates: dict, reference: str):
    """The papers' stacked bars: per arm and prompt set, wins, ties and losses against the
    reference (unparsed verdicts apart, in the hover)."""
    import plotly.graph_objects as go

    labels = [f"{arm} · {name}" for arm, sets in win_rates.items() for name in sets]
    cells = [cell for sets in win_rates.values() for cell in sets.values()]
    fig = go.Figure([go.Bar(y=labels, x=[c[key] for c in cells], name=f"{word}", orientation="h", marker_color=color,
                            text=[c[key] for c in cells],
                            hovertext=[f"win rate {c['win_rate']:.3f}" if c["win_rate"] is not None else "not judged"
                                       for c in cells])
                     for key, word, color in (("wins", "wins", "#2b8cbe"), ("ties", "ties", "#bdbdbd"),
                                              ("losses", f"{reference} wins", "#e34a33"))])
    fig.update_layout(barmode="stack", height=120 + 28 * len(labels), margin={"l": 220, "t": 40},
                      title=f"judged against {reference} (both orders)")
    return fig


def _win_rate_html(result: dict) -> str:
    from ..report.html import escape, figure_html

    if not result.get("win_rate"):
        return ""
    reference = result["win_rate_settings"]["reference"]
    lines = ["<h2>Win rates</h2><table><tr><th>arm</th><th>prompts</th><th>wins</th><th>ties</th><th>losses</th>"
             "<th>unparsed</th><th>win rate (W−L)/n+1</th><th>95% bootstrap</th></tr>"]
    for arm, sets in result["win_rate"].items():
        for name, c in sets.items():
            interval = f"[{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]" if c["ci"] else ""
            rate = f"{c['win_rate']:.3f}" if c["win_rate"] is not None else ""
            lines.append(f"<tr><td>{escape(arm)}</td><td>{escape(name)}</td><td class='n'>{c['wins']}</td>"
                         f"<td class='n'>{c['ties']}</td><td class='n'>{c['losses']}</td><td class='n'>{c['unparsed']}"
                         f"</td><td class='n'>{rate}</td><td class='n'>{interval}</td></tr>")
    return (figure_html(win_rate_figure(result["win_rate"], reference)) + "\n".join(lines) + "</table>")


def _table_html(rows: list[dict], sets: list[str]) -> str:
    from ..report.html import escape

    head = "".join(f"<th>{escape(s)}: loss</th><th>{escape(s)}: vs random (95% CI)</th>" for s in sets)
    lines = [f"<table><tr><th>arm</th><th>kind</th><th>seeds</th><th>records</th><th>response tokens</th>{head}</tr>"]
    for r in rows:
        cells = "".join(f"<td class='n'>{r['eval'][s]['mean']:.4f}</td><td class='n'>{escape(format_diff(r['eval'][s]))}</td>"
                        for s in sets)
        lines.append(f"<tr><td>{escape(r['name'])}</td><td>{escape(r['kind'])}</td><td class='n'>{r['seeds']}</td>"
                     f"<td class='n'>{r['n_records']:,.0f}</td><td class='n'>{r['n_response_tokens']:,.0f}</td>{cells}</tr>")
    return "\n".join(lines) + "</table>"


def format_diff(cell: dict) -> str:
    if cell["vs_random"] is None:
        return "no random arm"
    if cell["reference"]:
        interval = cell["ci95"]
        return "reference" + (f" (its mean: [{interval[0]:.4f}, {interval[1]:.4f}])" if interval else "")
    interval = cell["vs_random_ci95"]
    text = f"{cell['vs_random']:+.4f}"
    return text + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else " (1 seed: no interval)")
