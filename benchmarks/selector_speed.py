"""Time and peak memory of each diversity selector at growing sizes, with growth ratios.

Data: synthetic clustered unit vectors, not real embeddings: 1000 random centers in 384-d,
each point = normalise(center + noise of the same norm), so two points of one cluster have
cosine ≈ 0.5 and points of different clusters ≈ 0 (all-MiniLM-L6-v2 gives 384-d vectors).
Scores are uniform random. Each (size, selector) runs in a fresh process; "peak MB" is the
rise of that process's peak RSS during `select` (the vectors themselves excluded).

    python benchmarks/selector_speed.py --sizes 10000,100000 --budget 5%
"""
from __future__ import annotations

import os
import sys

# This file is named like the stdlib's `selectors` (which subprocess needs): drop its folder from the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

DIM = 384
CENTERS = 1000
OPTIONS = {"kcenter": {}, "deita": {}, "facility": {}, "clusters": {"clusters": 100}}


def clustered_vectors(n: int, seed: int = 0, chunk: int = 8192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CENTERS, DIM), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        block = centers[rng.integers(0, CENTERS, size)]
        block += rng.standard_normal((size, DIM), dtype=np.float32) / np.sqrt(DIM, dtype=np.float32)
        out[start:start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def measure(name: str, n: int, budget: str, options: dict, threads: int | None, queue) -> None:
    if threads:  # BLAS, OpenMP (scikit-learn) and faiss
        import faiss
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        faiss.omp_set_num_threads(threads)
    from sftpick.selectors import make_selector, parse_budget

    x = clustered_vectors(n)
    table = pa.table({"row": np.arange(n), "ifd": np.random.default_rng(1).uniform(size=n)})
    count = parse_budget(budget, n)
    selector = make_selector(name, **options)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    chosen = selector.select(table, count, x)
    seconds = time.perf_counter() - started
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    queue.put((seconds, peak_mb, len(chosen), count, getattr(selector, "stats_", {})))


def run_one(name: str, n: int, budget: str, threads: int | None) -> tuple:  # in a fresh process
    queue = mp.get_context("spawn").Queue()
    process = mp.get_context("spawn").Process(target=measure, args=(name, n, budget, OPTIONS[name], threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated record counts")
    parser.add_argument("--selectors", default=",".join(OPTIONS), help="comma-separated strategies")
    parser.add_argument("--budget", default="5%", help="count, fraction or percentage of each size")
    parser.add_argument("--tau", type=float, default=0.9, help="deita's threshold (lower: more records rejected)")
    parser.add_argument("--threads", type=int, help="cap BLAS/OpenMP/faiss threads (default: the libraries' own)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    OPTIONS["deita"] = {"tau": args.tau}
    names = args.selectors.split(",")
    print(f"{DIM}-d clustered unit vectors ({CENTERS} centers), budget {args.budget}, "
          f"{mp.cpu_count()} CPU cores, threads {args.threads or 'default'}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'selector':<10}{'n':>9}{'chosen':>9}{'seconds':>10}{'peak MB':>9}  "
          f"{'time x':>7}{'mem x':>7}  stats")
    for name in names:
        last = None
        for n in sizes:
            seconds, peak, chosen, count, stats = run_one(name, n, args.budget, args.threads)
            growth = ("", "") if last is None else (f"{seconds / last[0]:.1f}", f"{peak / max(last[1], 1):.1f}")
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
            print(f"{name:<10}{n:>9}{chosen:>9}{seconds:>10.2f}{peak:>9.0f}  {growth[0]:>7}{growth[1]:>7}  {shown}",
                  flush=True)
            last = (seconds, peak)
    grows = "grows with n" if args.budget.endswith("%") or "." in args.budget else "is fixed"
    print(f"time x / mem x: ratio to the previous size (the budget {grows})")


if __name__ == "__main__":
    main()
