"""Wall time of the same scoring on the local and the ray engine: the first N records of a
real file, `len,mtld` by default, no cache (every record scored in each run); with
`--repeats R`, the median of R runs of each, the runs of the engines interleaved. The ray
figure includes starting and stopping the local Ray cluster and its actors.

    python benchmarks/engines.py --data ../shared/data/alpaca-cherry-5pct.json --records 2000
    python benchmarks/engines.py --data .work/scale/records-100000.jsonl --records 100000   # after scale.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import sftpick


def first_records(path: Path, n: int, folder: Path) -> Path:
    """The first `n` records of a JSON array or JSONL file (e.g. benchmarks/scale.py's), as a file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            head = [line for _, line in zip(range(n), lines)]
        out = folder / f"first-{len(head)}.jsonl"
        out.write_text("".join(head), encoding="utf-8")
        return out
    records = json.loads(path.read_text())[:n]
    out = folder / f"first-{len(records)}.json"
    out.write_text(json.dumps(records))
    return out


def timed(data: Path, scorers: list[str], **engine) -> tuple[float, int]:
    started = time.perf_counter()
    result = sftpick.score(data, scorers=scorers, progress=False, **engine)
    return time.perf_counter() - started, result.table.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/alpaca-cherry-5pct.json"))
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--scorers", default="len,mtld")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    scorers = args.scorers.split(",")
    with tempfile.TemporaryDirectory() as folder:
        data = first_records(args.data, args.records, Path(folder))
        print(f"{args.records} records of {args.data.name}, scorers {args.scorers}, "
              f"load average before: {os.getloadavg()[0]:.2f}")
        names = ["local", f"ray, {args.workers} workers", f"ray, {args.workers} workers, cluster already up"]
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in names}
        for _ in range(args.repeats):
            runs[names[0]].append(timed(data, scorers, engine="local"))
            runs[names[1]].append(timed(data, scorers, engine="ray", workers=args.workers))
            runs[names[2]].append(timed_on_a_running_cluster(data, scorers, args.workers))
        for name, times in runs.items():
            report(name, statistics.median(seconds for seconds, _ in times), times[0][1], len(times))
        local = statistics.median(seconds for seconds, _ in runs[names[0]])
        print(f"ray / local: {statistics.median(s for s, _ in runs[names[1]]) / local:.2f}x "
              f"({statistics.median(s for s, _ in runs[names[2]]) / local:.2f}x with the cluster already up)")


def timed_on_a_running_cluster(data: Path, scorers: list[str], workers: int) -> tuple[float, int]:
    import ray

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    print(f"(ray.init of a local cluster: {time.perf_counter() - started:.1f} s)")
    try:
        return timed(data, scorers, engine="ray", workers=workers)
    finally:
        ray.shutdown()


def report(name: str, seconds: float, rows: int, runs: int) -> None:
    print(f"{name:<36} {seconds:7.1f} s  {rows / seconds:8.0f} records/s  (median of {runs}; "
          f"load average now {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
