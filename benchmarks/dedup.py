"""Curation at scale: records/s and peak RSS of `sftpick run` with each curation setting, per
input size, against the same run without curation (`--dedup none`) in the same invocation.

Inputs are benchmarks/scale.py's: real records of ../shared/data (Alpaca, GSM8K, GPTeacher),
sampled with replacement and tagged so that every content hash differs. Being copies of some
20k real records with a tag apiece, most of a large input is a near duplicate of an earlier
record: a hard case for LSH grouping (large clusters), an easy one for exact duplicates (none).
The test set for decontamination is 1,000 GSM8K problems of the same data, so about 1 in 30
records of an input matches it.

Each setting runs `sftpick run FILE --scorers len,mtld --by len --budget 5% --no-progress
SETTING` in a fresh process (peak RSS from getrusage of a fresh parent, as scale.py); the
curation stage's own seconds come from the run's manifest, so the stage's records/s is
printed apart from the whole run's (which includes reading the input a second time and
scoring). Prints the load average before and after.

    python benchmarks/dedup.py [--sizes 100000,1000000] [--settings none,exact,near,decontaminate]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from scale import COMMAND, DATA, make_input, measure

SETTINGS = {"none": ["--dedup", "none"], "exact": ["--dedup", "exact"], "near": ["--dedup", "near"],
            "decontaminate": ["--dedup", "exact", "--decontaminate", "{tests}"]}


def make_tests(path: Path, n: int = 1000) -> Path:
    if not path.exists():
        path.write_text(json.dumps(json.loads((DATA / "gsm8k-train.json").read_text())[:n]))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--work", type=Path, default=Path(".work/scale"))
    args = parser.parse_args()
    sizes, settings = [int(s) for s in args.sizes.split(",")], args.settings.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    tests = make_tests(args.work / "gsm8k-tests-1000.json")
    for n in sizes:
        make_input(args.work / f"records-{n}.jsonl", n)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"sftpick run FILE {' '.join(COMMAND)} SETTING")
    print(f"{'records':>10} {'setting':>14} {'seconds':>8} {'records/s':>10} {'stage s':>8} {'stage rec/s':>12} "
          f"{'peak RSS MB':>12}  removed")
    peaks = {}
    for n in sizes:
        for name in settings:
            setting = [part.format(tests=tests) for part in SETTINGS[name]]
            r = measure(args.work / f"records-{n}.jsonl", args.work / f"dedup-{n}-{name}", tuple(setting))
            r["stage_seconds"] = r["manifest"].get("curation", {}).get("seconds")
            r["removed"] = r["manifest"]["counts"].get("removed_by_reason", {})
            peaks[n, name] = r["peak_mb"]
            stage = (f"{r['stage_seconds']:>8.1f} {r['records'] / r['stage_seconds']:>12,.0f}" if r["stage_seconds"]
                     else f"{'-':>8} {'-':>12}")
            print(f"{r['records']:>10,} {name:>14} {r['seconds']:>8.1f} {r['records'] / r['seconds']:>10,.0f} {stage} "
                  f"{r['peak_mb']:>12,.0f}  {r['removed']}", flush=True)
            shutil.rmtree(args.work / f"dedup-{n}-{name}", ignore_errors=True)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print("peak RSS " + ", ".join(f"{name} x{peaks[large, name] / peaks[small, name]:.2f}" for name in settings)
              + f" ({large:,} / {small:,} records)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
