"""Weak-vs-strong IFD consistency on real data (Superfiltering, Li et al., ACL 2024,
arXiv 2402.00530: a weak model's IFD ranks data like a strong model's).

`scripts/consistency.sh` runs the whole study; by hand:

    python scripts/consistency.py sample --out .work/consistency/sample.jsonl --parts 4
    sftpick score .work/consistency/sample-1.jsonl -o .work/consistency/smollm2-1.parquet --model smollm2-135m --max-length 128
    sftpick score .work/consistency/sample-1.jsonl -o .work/consistency/gemma3-1.parquet --model gemma3-270m --max-length 128
    (… parts 2-4 …)
    python scripts/consistency.py analyze .work/consistency/smollm2 .work/consistency/gemma3 \\
        --sample .work/consistency/sample.jsonl --docs docs

`sample` draws a fixed-seed sample from each source file in /work/shared/data and writes it as
JSONL with an `id` (`<source>-<index in its file>`) and a `source` field (and in `--parts`
seeded random parts), so the two score tables can be matched by id and reported per source.
`analyze` compares them (overall and per source) with `sftpick.compare`, adds a bootstrap 95%
interval for Spearman's rho, and writes docs/consistency.json and docs/consistency.png.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from studies import save_png
from sftpick.compare import compare, matched_scores

DATA = Path("/work/shared/data")
SOURCES = {
    "alpaca": "alpaca-cherry-5pct.json",
    "gsm8k": "gsm8k-train.json",
    "gpteacher-roleplay": "gpteacher-roleplay.json",
    "gpteacher-toolformer": "gpteacher-toolformer.json",
}


def build_sample(out: Path, per_source: int, seed: int, parts: int = 4, top_up: int = 0,
                 data: Path = DATA) -> int:
    """Write `per_source` records drawn with `seed` from each source to `out`, and the same
    records split into `parts` files (`out` with suffix -1, -2, …), each an equal random
    share of every source, so that scoring part by part gives usable results early.
    `top_up` more records per source, drawn after all the others (so the parts above do not
    change), go to one more part: they replace the records a short `--max-length` rejects."""
    rng = random.Random(seed)
    lines, split = [], [[] for _ in range(parts + bool(top_up))]
    chosen = {}
    for source, filename in SOURCES.items():
        records = json.loads((data / filename).read_text())
        chosen[source] = rng.sample(range(len(records)), per_source)  # random order: parts are random shares
        for position, index in enumerate(chosen[source]):
            lines.append(_sample_line(source, index, records[index]))
            split[position % parts].append(lines[-1])
    for source, filename in SOURCES.items() if top_up else ():
        records = json.loads((data / filename).read_text())
        rest = sorted(set(range(len(records))) - set(chosen[source]))
        for index in rng.sample(rest, top_up):
            lines.append(_sample_line(source, index, records[index]))
            split[parts].append(lines[-1])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    for number, part in enumerate(split, start=1):
        out.with_name(f"{out.stem}-{number}{out.suffix}").write_text("\n".join(part) + "\n")
    return len(lines)


def _sample_line(source: str, index: int, record: dict) -> str:
    return json.dumps({"id": f"{source}-{index}", "source": source, **record}, ensure_ascii=False)


def load_parts(stem: Path, parts: int) -> pa.Table | None:
    """The score tables `<stem>-1.parquet` … that exist, concatenated."""
    found = [stem.with_name(f"{stem.name}-{n}.parquet") for n in range(1, parts + 1)]
    tables = [pq.read_table(p, columns=["id", "ifd", "n_response_tokens"]) for p in found if p.is_file()]
    return pa.concat_tables(tables) if tables else None


def analyze(weak: pa.Table, strong: pa.Table, sample: Path) -> dict:
    """Agreement overall and per source, on the ids scored by both models."""
    source_of = {json.loads(line)["id"]: json.loads(line)["source"] for line in sample.read_text().splitlines()}
    both = set(weak.column("id").to_pylist()) & set(strong.column("id").to_pylist())
    results = {"all": compare(weak, strong, column="ifd", key="id").to_dict()}
    for source in SOURCES:
        ids = pa.array([i for i in both if source_of[i] == source])
        if len(ids) >= 2:
            weak_part, strong_part = (t.filter(pc.is_in(t.column("id"), value_set=ids)) for t in (weak, strong))
            results[source] = compare(weak_part, strong_part, column="ifd", key="id").to_dict()
            x, y = matched_scores(weak_part, strong_part, "ifd", "id")
            results[source]["median_ifd"] = {"weak": float(np.median(x)), "strong": float(np.median(y))}
            results[source]["spearman_95ci"] = spearman_interval(x, y)
    x, y = matched_scores(weak, strong, "ifd", "id")
    results["all"]["spearman_95ci"] = spearman_interval(x, y)
    results["filter"] = _filter_agreement(x, y)
    return results


def spearman_interval(x: np.ndarray, y: np.ndarray, resamples: int = 1000) -> list[float]:
    """Percentile bootstrap 95% interval of Spearman's rho over records (seeded)."""
    from scipy.stats import bootstrap, spearmanr

    interval = bootstrap((x, y), lambda a, b: spearmanr(a, b).statistic, paired=True, vectorized=False,
                         n_resamples=resamples, method="percentile", random_state=0).confidence_interval
    return [round(float(interval.low), 3), round(float(interval.high), 3)]


def _filter_agreement(x: np.ndarray, y: np.ndarray) -> dict:
    """How often the two models agree on Superfiltering's first step, dropping IFD >= 1."""
    return {"n": len(x), "weak_ifd_ge_1": int((x >= 1).sum()), "strong_ifd_ge_1": int((y >= 1).sum()),
            "same_decision": float(np.mean((x >= 1) == (y >= 1)))}


def plot(weak: pa.Table, strong: pa.Table, sample: Path, png: Path,
         labels: tuple[str, str] = ("SmolLM2-135M", "Gemma-3-270M")) -> None:
    """Rank-vs-rank scatter coloured by source, drawn by plotly and saved as PNG by headless Chromium."""
    import plotly.graph_objects as go
    from scipy.stats import rankdata

    source_of = {json.loads(line)["id"]: json.loads(line)["source"] for line in sample.read_text().splitlines()}
    ids = weak.column("id").to_pylist()
    strong_ifd = dict(zip(strong.column("id").to_pylist(), strong.column("ifd").to_pylist()))
    keep = [i for i, k in enumerate(ids) if k in strong_ifd]
    x = rankdata(np.array(weak.column("ifd").to_pylist())[keep]) / len(keep)
    y = rankdata(np.array([strong_ifd[ids[i]] for i in keep])) / len(keep)
    sources = np.array([source_of[ids[i]] for i in keep])
    fig = go.Figure([go.Scatter(x=x[sources == s], y=y[sources == s], mode="markers", name=s,
                                marker=dict(size=4, opacity=0.6)) for s in SOURCES])
    fig.update_layout(title=f"IFD rank (quantile), {len(keep)} records: {labels[0]} vs {labels[1]}",
                      xaxis_title=f"{labels[0]} IFD quantile", yaxis_title=f"{labels[1]} IFD quantile",
                      template="plotly_white")
    save_png(fig, png, 920, 780)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="build the fixed-seed sample file")
    sample.add_argument("--out", type=Path, default=Path(".work/consistency/sample.jsonl"))
    sample.add_argument("--per-source", type=int, default=500)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--parts", type=int, default=4)
    sample.add_argument("--top-up", type=int, default=0, help="records per source in one extra part")
    report = commands.add_parser("analyze", help="compare the two models' scores, write figures and plot")
    report.add_argument("weak", type=Path, help="score table stem of the weak model (parts <stem>-N.parquet)")
    report.add_argument("strong", type=Path, help="score table stem of the strong model")
    report.add_argument("--sample", type=Path, default=Path(".work/consistency/sample.jsonl"))
    report.add_argument("--parts", type=int, default=4)
    report.add_argument("--docs", type=Path, default=Path("docs"))
    report.add_argument("--name", default="consistency", help="output stem: DOCS/NAME.json and DOCS/NAME.png")
    report.add_argument("--labels", nargs=2, default=["SmolLM2-135M (weak)", "Gemma-3-270M (strong)"],
                        help="axis labels of the plot")
    args = parser.parse_args()
    if args.command == "sample":
        print(f"{build_sample(args.out, args.per_source, args.seed, args.parts, args.top_up)} records -> {args.out}")
    else:
        weak, strong = load_parts(args.weak, args.parts), load_parts(args.strong, args.parts)
        results = analyze(weak, strong, args.sample)
        (args.docs / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
        plot(weak, strong, args.sample, args.docs / f"{args.name}.png", tuple(args.labels))
        for name, figures in results.items():
            if name != "filter":
                overlap = " ".join(f"{k}={v:.3f}" for k, v in figures["top_overlap"].items())
                medians = figures.get("median_ifd", {})
                print(f"{name:22s} n={figures['n']:5d} spearman={figures['spearman']:.3f} "
                      f"{figures['spearman_95ci']} "
                      f"kendall={figures['kendall']:.3f} top-overlap {overlap} median ifd {medians}")
        print("filter (IFD >= 1):", results["filter"])


if __name__ == "__main__":
    main()
