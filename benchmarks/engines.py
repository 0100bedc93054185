"""Wall time of the same scoring on the local and the ray engine: the first N records of a
real file, `len,mtld` by default, no cache (every record scored in each run), one run each.
The ray figure includes starting and stopping the local Ray cluster and its actors.

    python benchmarks/engines.py --data ../shared/data/alpaca-cherry-5pct.json --records 2000
    python benchmarks/engines.py --data .work/scale/records-100000.jsonl --records 100000   # after scale.py
"""
from __future__ import annotations

import argparse
import json
import os
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
    args = parser.parse_args()
    scorers = args.scorers.split(",")
    with tempfile.TemporaryDirectory() as folder:
        data = first_records(args.data, args.records, Path(folder))
        print(f"{args.records} records of {args.data.name}, scorers {args.scorers}, "
              f"load average before: {os.getloadavg()[0]:.2f}")
        runs = {"local": {"engine": "local"},
                f"ray, {args.workers} workers": {"engine": "ray", "workers": args.workers}}
        for name, engine in runs.items():
            report(name, *timed(data, scorers, **engine))
        import ray

        started = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        print(f"(ray.init of a local cluster: {time.perf_counter() - started:.1f} s)")
        report(f"ray, {args.workers} workers, cluster already up",
               *timed(data, scorers, engine="ray", workers=args.workers))
        ray.shutdown()


def report(name: str, seconds: float, rows: int) -> None:
    print(f"{name:<36} {seconds:7.1f} s  {rows / seconds:8.0f} records/s  "
          f"(load average {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
