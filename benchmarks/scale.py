"""Scale of the local engine: wall time, records/s and peak RSS of `sftpick run` per input size.

For each size a JSONL file of real records is generated (a seeded sample of ../shared/data:
Alpaca, GSM8K and GPTeacher records, each lightly varied so that every content hash differs:
a tag in the instruction, and now and then a sentence of the response dropped), then

    sftpick run FILE -o OUT --scorers len,mtld --by len --budget 5% --no-progress

runs in a fresh process per size; its peak RSS is read with getrusage(RUSAGE_CHILDREN) in a
fresh parent of its own, so sizes do not mix. Prints each size's figures, the ratios of the
largest size to the smallest, and the load average before and after (other work on the
machine slows every figure). Files go under --work (default `.work/scale`, not committed) and
are reused when present.

    python benchmarks/scale.py [--sizes 100000,1000000] [--work .work/scale] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ("alpaca-cherry-5pct.json", "gsm8k-train.json", "gpteacher-roleplay.json", "gpteacher-toolformer.json")
COMMAND = ["--scorers", "len,mtld", "--by", "len", "--budget", "5%", "--no-progress"]
# Runs the command in a fresh process and prints its peak RSS (KiB on Linux) as the last line.
_MEASURE = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def real_records() -> list[dict]:
    records = []
    for name in SOURCES:
        records += json.loads((DATA / name).read_text())
    return records


def varied(record: dict, i: int, rng: random.Random) -> dict:
    """The record with a tag in its instruction (so its content hash is its own) and, for one
    in four, one sentence of the response left out (so lengths vary too)."""
    out = dict(record)
    out["instruction"] = f"{record['instruction']} (#{i})"
    sentences = record["output"].split(". ")
    if len(sentences) > 2 and rng.random() < 0.25:
        del sentences[rng.randrange(len(sentences))]
        out["output"] = ". ".join(sentences)
    return out


def make_input(path: Path, n: int, seed: int = 0) -> None:
    if path.exists():
        return
    rng = random.Random(seed)
    pool = real_records()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps(varied(rng.choice(pool), i, rng), ensure_ascii=False) + "\n")
    tmp.rename(path)


def measure(data: Path, out: Path, extra: tuple[str, ...] = ()) -> dict:
    """`sftpick run DATA -o OUT` with COMMAND and `extra` in a fresh process: its figures and
    manifest."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "sftpick.cli", "run", str(data), "-o", str(out), *COMMAND, *extra]
    started = time.perf_counter()
    lines = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                           check=True).stdout.split()
    seconds = time.perf_counter() - started
    code, peak_kib = int(lines[-2]), int(lines[-1])
    if code != 0:
        raise SystemExit(f"sftpick run {data} {' '.join(extra)} exited with {code}")
    manifest = json.loads((out / "manifest.json").read_text())
    n = manifest["counts"]["input"]
    return {"records": n, "seconds": seconds, "records_per_s": n / seconds, "peak_mb": peak_kib / 1024,
            "selected": manifest["counts"]["selected"], "manifest": manifest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--work", type=Path, default=Path(".work/scale"))
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        make_input(args.work / f"records-{n}.jsonl", n)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"sftpick run FILE {' '.join(COMMAND)}")
    print(f"{'records':>10} {'seconds':>9} {'records/s':>10} {'peak RSS MB':>12}")
    results = []
    for n in sizes:
        result = measure(args.work / f"records-{n}.jsonl", args.work / f"run-{n}")
        results.append(result)
        print(f"{result['records']:>10,} {result['seconds']:>9.1f} {result['records_per_s']:>10,.0f} "
              f"{result['peak_mb']:>12,.0f}", flush=True)
        if not args.keep:
            shutil.rmtree(args.work / f"run-{n}", ignore_errors=True)
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(f"ratios {large['records']:,} / {small['records']:,}: time x{large['seconds'] / small['seconds']:.2f}, "
              f"peak RSS x{large['peak_mb'] / small['peak_mb']:.2f}, "
              f"records/s x{large['records_per_s'] / small['records_per_s']:.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
