"""Start-up of the CLI: wall time and peak RSS of whole `sftpick` processes that do no model
work (`--help`, a usage error, `select` and `report` on existing outputs), median of 5 each,
and the import time of each heavy library on its own (what a command would pay if the CLI
imported it).

The outputs that `select` and `report` read are made first by one `sftpick run` on the
bundled sample with the cheap `len` scorer (not timed). Prints the load average before and
after: a loaded machine slows every figure.

    python benchmarks/startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "sftpick" / "data" / "sample_alpaca.jsonl"
HEAVY = ("torch", "transformers", "sklearn", "scipy", "faiss", "plotly", "sentence_transformers", "ray")
# Runs the command in a fresh process; prints its exit code and peak RSS (KiB) as the last line.
_MEASURE = ("import resource, subprocess, sys, time\n"
            "started = time.perf_counter()\n"
            "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(code, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def timed(command: list[str], repeat: int) -> tuple[float, float, int]:
    """Median seconds, median peak RSS (MB) and the exit code of `command`, each run fresh."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                             check=True).stdout.split()
        runs.append((int(out[-3]), float(out[-2]), int(out[-1]) / 1024))
    return statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs), runs[0][0]


def import_seconds(module: str, repeat: int) -> float | None:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode:
            return None
        times.append(float(done.stdout.split()[-1]))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sftpick = [sys.executable, "-m", "sftpick.cli"]
    work = Path(tempfile.mkdtemp(prefix="sftpick-startup-"))
    subprocess.run([*sftpick, "run", str(SAMPLE), "-o", str(work / "out"), "--scorers", "len", "--by", "len",
                    "--budget", "10", "--no-progress"], check=True, capture_output=True)
    commands = {
        "--help": ["--help"],
        "usage error": ["run", str(SAMPLE), "-o", str(work / "x"), "--budgte", "5"],
        "select": ["select", str(SAMPLE), "--scores", str(work / "out" / "scores.parquet"), "--by", "len",
                   "--budget", "5", "-o", str(work / "subset.jsonl")],
        "report": ["report", str(work / "out")],
    }
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"{'command':>14} {'median s':>9} {'peak RSS MB':>12} {'exit':>5}")
    for name, command in commands.items():
        seconds, peak, code = timed([*sftpick, *command], args.repeat)
        print(f"{name:>14} {seconds:>9.2f} {peak:>12.0f} {code:>5}", flush=True)
    print(f"\nimport time of each library alone (median of {args.repeat}, seconds):")
    for module in ("sftpick.cli", *HEAVY):
        seconds = import_seconds(module, args.repeat)
        print(f"{module:>22} {'not installed' if seconds is None else f'{seconds:.2f}':>9}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
