"""Which part of the cherry variant moves the IFD ranking: the direct pass's masked
`### Response:` prefix, or taking the ratio of mean losses instead of perplexities?

Both score tables must use the same prompt (`--template alpaca`), so their conditional losses
are the same. From their `loss_cond` and `loss_direct` columns:
  - prefix only: exp(cond - direct) with the superfiltering direct pass vs with cherry's;
  - ratio only: on cherry's losses, exp(cond - direct) vs cond / direct.

    python scripts/ifd_variant_parts.py .work/templates/alpaca-1.parquet .work/templates/cherry-1.parquet \\
        --sample .work/templates/sample.jsonl --json docs/template-variant-parts.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from consistency import analyze  # scripts/consistency.py: overall and per-source agreement


def ifd_table(table: pa.Table, ratio_of: str) -> pa.Table:
    cond, direct = table.column("loss_cond").to_numpy(), table.column("loss_direct").to_numpy()
    ifd = np.exp(cond - direct) if ratio_of == "perplexities" else cond / direct
    return pa.table({"id": table.column("id"), "ifd": ifd})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("superfiltering", type=Path, help="scores of --variant superfiltering --template alpaca")
    parser.add_argument("cherry", type=Path, help="scores of --variant cherry (Alpaca prompt)")
    parser.add_argument("--sample", type=Path, required=True, help="JSONL with each record's id and source")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    plain, cherry = pq.read_table(args.superfiltering), pq.read_table(args.cherry)
    results = {"prefix only": analyze(ifd_table(plain, "perplexities"), ifd_table(cherry, "perplexities"), args.sample),
               "ratio only": analyze(ifd_table(cherry, "perplexities"), ifd_table(cherry, "losses"), args.sample)}
    for part, groups in results.items():
        for group, figures in groups.items():
            if group == "filter":
                continue
            overlap = " ".join(f"{k}={v:.2f}" for k, v in figures["top_overlap"].items())
            print(f"{part:12s} {group:22s} n={figures['n']:4d} spearman={figures['spearman']:.3f} top-overlap {overlap}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
