"""Hold out records for evaluation: from each input file, N records (seed-chosen) go to one
held-out file and the rest to a pool file of the same name, records byte-for-byte as they
came (through sftpick's own reader and subset writer). Skips work already done.

    python scripts/split_heldout.py data/a.json data/b.json --heldout 100 --seed 0 --out .work/split
    -> .work/split/a.json, .work/split/b.json (pools), .work/split/heldout.json (100 from each)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sftpick.io import raw_texts, read_dataset, write_subset
from sftpick.writers import atomic_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--heldout", type=int, required=True, help="records held out per input file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    target = args.out / "heldout.json"
    if target.exists():
        print(f"{target} exists: nothing to do")
        return
    held = []
    for path in args.inputs:
        dataset = read_dataset(path)
        if dataset.kind != "json":
            raise SystemExit(f"{path}: only .json arrays are supported here")
        rows = np.array([e.row for e in dataset.examples])  # records the reader accepts
        chosen = np.sort(np.random.default_rng(args.seed).choice(rows, args.heldout, replace=False))
        write_subset(dataset, np.setdiff1d(rows, chosen), args.out / path.name)
        texts = raw_texts(dataset.path, dataset.kind, chosen)  # each record as it came
        held += [texts[int(row)] for row in chosen]
        print(f"{path}: {len(rows) - len(chosen)} pool, {len(chosen)} held out ({dataset.n_records - len(rows)} rejected)")
    atomic_write(target, "[\n" + ",\n".join(held) + "\n]\n")


if __name__ == "__main__":
    main()
