"""What the study scripts share: the sources in ../shared/data, the command-line options of
the fine-tunes every arm gets, and the figures (plotly, saved as PNG by headless Chromium: no
kaleido, no network)."""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from sftpick.writers import atomic_write

NO_TOOLBAR = {"displayModeBar": False}
SOURCES = {"gsm8k": "gsm8k-train.json", "toolformer": "gpteacher-toolformer.json",
           "roleplay": "gpteacher-roleplay.json", "alpaca": "alpaca-cherry-5pct.json"}


def study_parser(doc: str, *, work: str, per_source: int, heldout: int, seeds: int, max_length: int,
                 epochs: float, lr: float) -> argparse.ArgumentParser:
    """The options every study has: data and output folders, pool size, seeds, model and the
    fine-tune of every arm."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(work))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--per-source", type=int, default=per_source, help="pool records drawn from each source")
    parser.add_argument("--heldout", type=int, default=heldout)
    parser.add_argument("--seed", type=int, default=0, help="the draws of pool, held-out sets and targets")
    parser.add_argument("--seeds", type=int, default=seeds, help="random draws (and their fine-tunes)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-length", type=int, default=max_length)
    parser.add_argument("--epochs", type=float, default=epochs)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=8, help="0: full fine-tuning")
    return parser


def training_config(args: argparse.Namespace) -> dict:
    """The fine-tune every arm gets, as `sftpick.evaluate(config=…)` takes it."""
    return {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "max_length": args.max_length,
            "lora_rank": args.lora_rank or None, "seed": args.seed}


class StageClock:
    """Wall seconds per stage, kept in the work folder per study settings. A rerun reads its
    stages from the caches in seconds, so for each stage the longest time seen is kept: the
    time of the run that did the work."""

    def __init__(self, work: Path, args: argparse.Namespace):
        settings = json.dumps({k: str(v) for k, v in sorted(vars(args).items()) if k != "docs"})
        self.path = work / f"stage-seconds-{hashlib.sha256(settings.encode()).hexdigest()[:12]}.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        yield
        self.seconds[stage] = round(max(self.seconds.get(stage, 0.0), time.perf_counter() - started), 1)
        atomic_write(self.path, json.dumps(self.seconds, indent=2))


def save_png(fig, png: Path, width: int, height: int) -> Path:
    from plotly.offline import get_plotlyjs

    fig.update_layout(width=width - 20, height=height - 20)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "plot.html"
        page.write_text(f"<html><head><script>{get_plotlyjs()}</script></head><body style='margin:0'>"
                        f"{fig.to_html(full_html=False, include_plotlyjs=False, config=NO_TOOLBAR)}</body></html>")
        subprocess.run([shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
                        f"--screenshot={png.resolve()}", f"--window-size={width},{height}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    return png


def vs_random_figure(summary: list[dict], title: str, leave_out: tuple[str, ...] = ()):
    """Each arm's held-out loss minus random's, with its 95% interval, one panel per eval set
    (below zero: better than random); `leave_out` names arms whose scale would flatten the rest."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = list(summary[0]["eval"])
    rows = [r for r in summary if not r["eval"][sets[0]]["reference"] and r["name"] not in leave_out]
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=sets, shared_yaxes=True)
    for col, name in enumerate(sets, start=1):
        cells = [r["eval"][name] for r in rows]
        low = [c["vs_random"] - c["vs_random_ci95"][0] if c["vs_random_ci95"] else 0 for c in cells]
        high = [c["vs_random_ci95"][1] - c["vs_random"] if c["vs_random_ci95"] else 0 for c in cells]
        fig.add_trace(go.Bar(y=[r["name"] for r in rows], x=[c["vs_random"] for c in cells], orientation="h",
                             marker_color=["#2b8cbe" if c["vs_random"] < 0 else "#e34a33" for c in cells],
                             error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
                             showlegend=False), row=1, col=col)
        fig.add_vline(x=0, line_color="#444", row=1, col=col)
        fig.update_xaxes(title_text="held-out loss − random's (95% interval)", row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", margin={"l": 160, "t": 80})
    return fig
