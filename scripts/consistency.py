"""Weak-vs-strong IFD consistency on real data (Superfiltering, Li et al., ACL 2024,
arXiv 2402.00530: a weak model's IFD ranks data like a strong model's).

    python scripts/consistency.py sample  --out .work/consistency/sample.jsonl
    sftpick score .work/consistency/sample.jsonl -o .work/consistency/smollm2.parquet --model smollm2-135m --max-length 256
    sftpick score .work/consistency/sample.jsonl -o .work/consistency/gemma3.parquet --model gemma3-270m --max-length 256
    python scripts/consistency.py analyze .work/consistency/smollm2.parquet .work/consistency/gemma3.parquet \\
        --sample .work/consistency/sample.jsonl --docs docs

`sample` draws a fixed-seed sample from each source file in /work/shared/data and writes it as
JSONL with an `id` (`<source>-<index in its file>`) and a `source` field, so the two score
tables can be matched by id and reported per source. `analyze` compares them (overall and per
source) with `sftpick.compare` and writes docs/consistency.json and docs/consistency.html.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DATA = Path("/work/shared/data")
SOURCES = {
    "alpaca": "alpaca-cherry-5pct.json",
    "gsm8k": "gsm8k-train.json",
    "gpteacher-roleplay": "gpteacher-roleplay.json",
    "gpteacher-toolformer": "gpteacher-toolformer.json",
}


def build_sample(out: Path, per_source: int, seed: int, data: Path = DATA) -> int:
    """Write `per_source` records drawn with `seed` from each source; returns the count."""
    rng = random.Random(seed)
    lines = []
    for source, filename in SOURCES.items():
        records = json.loads((data / filename).read_text())
        for index in sorted(rng.sample(range(len(records)), per_source)):
            record = {"id": f"{source}-{index}", "source": source, **records[index]}
            lines.append(json.dumps(record, ensure_ascii=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="build the fixed-seed sample file")
    sample.add_argument("--out", type=Path, default=Path(".work/consistency/sample.jsonl"))
    sample.add_argument("--per-source", type=int, default=500)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "sample":
        print(f"{build_sample(args.out, args.per_source, args.seed)} records -> {args.out}")


if __name__ == "__main__":
    main()
