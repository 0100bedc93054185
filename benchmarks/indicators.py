"""Instruction Mining indicators: throughput on real records, kNN search at scale, memory.

    python benchmarks/indicators.py                 # 20k real records from ../shared/data
    python benchmarks/indicators.py --n 5000 --approx-n 200000

Prints records/s per indicator (model/tokenizer loading reported apart), then kNN search:
a dense n x n numpy baseline against the blocked faiss search on the real embeddings (same
answers, memory n^2 vs n*k), exact search on `--exact-n` 384-d vectors and approximate
(`--approx-index`) on `--approx-n`, with recall@k against exact search on 1,000 queries.
Memory is the growth of peak RSS (VmHWM, reset before each step) over the step.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sftpick.examples import to_example
from sftpick.scorers.knn import KnnScorer, kth_neighbour_distance
from sftpick.scorers.length import LengthScorer
from sftpick.scorers.mtld import MTLDScorer
from sftpick.scorers.reward import RewardScorer
from sftpick.scorers.rule import load_rule

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ("alpaca-cherry-5pct.json", "gpteacher-roleplay.json", "gpteacher-toolformer.json", "gsm8k-train.json")
K = 6


def real_examples(n: int) -> list:
    records = [r for name in FILES for r in json.loads((DATA / name).read_text())]
    picked = np.random.default_rng(0).permutation(len(records))[:n]
    return [to_example(records[i], row, "alpaca") for row, i in enumerate(picked)]


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def peak_growth_mib(before_kib: int) -> float:
    return (_status_kib("VmHWM") - before_kib) / 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def timed(label: str, fn, n: int, unit: str = "records"):
    before = reset_peak()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<44} {n:>9,} {unit:<8} {seconds:9.2f} s {n / seconds:12,.0f} {unit}/s "
          f"peak +{peak_growth_mib(before):8.1f} MiB", flush=True)
    return result, seconds


def indicators(examples: list, reward_n: int) -> np.ndarray:
    n = len(examples)
    print(f"\n== indicators over {n:,} real records (../shared/data, shuffled, seed 0) ==")
    length = LengthScorer()
    timed("len: load tokenizer (setup)", length.setup, 1, "loads")
    lengths, _ = timed("len (tokens + characters)", lambda: _chunks(length, examples), n)
    mtld = MTLDScorer()
    mtld.setup()
    timed("mtld", lambda: _chunks(mtld, examples), n)
    knn = KnnScorer(knn_k=K, device="cpu")
    knn.setup()
    scores, _ = timed(f"knn_{K}: embed (MiniLM-L6) + exact search", lambda: knn.score(examples), n)
    vectors = knn.embeddings_[1]
    timed(f"knn_{K}: exact search alone", lambda: kth_neighbour_distance(vectors, K), n)
    with tempfile.TemporaryDirectory() as folder:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_reward import build_tiny_reward_model

        reward = RewardScorer(reward_model=str(build_tiny_reward_model(Path(folder))), device="cpu")
        reward.setup()
        part = examples[:reward_n]
        rewards, _ = timed("reward: tiny 2-layer BERT (code path only)", lambda: _chunks(reward, part), len(part))
    columns = {"len": lengths["len"][:reward_n], "knn_6": scores["knn_6"][:reward_n], "reward": rewards["reward"]}
    timed("rule (from the three columns)", lambda: load_rule().apply(columns), reward_n)
    print("ppl: the IFD pass itself (see the IFD section for its throughput)")
    return vectors


def _chunks(scorer, examples: list, size: int = 512) -> dict:
    parts = [scorer.score(examples[i: i + size]) for i in range(0, len(examples), size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def dense_baseline(vectors: np.ndarray) -> None:
    n = len(vectors)
    print(f"\n== kNN on the {n:,} real embeddings: dense numpy n x n (baseline) vs blocked faiss ==")

    def dense() -> np.ndarray:
        similarity = vectors @ vectors.T  # n x n
        np.fill_diagonal(similarity, -np.inf)
        kth = -np.partition(-similarity, K - 1, axis=1)[:, K - 1]
        return np.sqrt(np.maximum(2 - 2 * kth, 0))

    expected, base = timed("dense numpy (n x n similarity matrix)", dense, n)
    got, fast = timed("faiss exact, query blocks of 4096", lambda: kth_neighbour_distance(vectors, K)[0], n)
    print(f"max |difference| = {np.abs(got - expected).max():.2e}; faiss {base / fast:.2f}x the baseline's speed; "
          f"n x n float32 alone = {n * n * 4 / 2**20:,.0f} MiB, n x (k+1) results = {n * (K + 1) * 12 / 2**20:.1f} MiB")


def clustered(n: int, centers: np.ndarray, seed: int) -> np.ndarray:
    """n unit vectors around the real embeddings (each a centre + isotropic noise, sigma 0.03/dim)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = centers[rng.integers(0, len(centers), stop - start)]
        block = block + rng.normal(scale=0.03, size=block.shape).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def at_scale(centers: np.ndarray, exact_n: int, approx_n: int, approx_index: str) -> None:
    print(f"\n== kNN at scale: 384-d unit vectors around the real embeddings, k = {K} ==")
    if exact_n:
        x = clustered(exact_n, centers, 1)
        print(f"vectors: {x.nbytes / 2**20:,.0f} MiB")
        timed("exact (faiss, blocked)", lambda: kth_neighbour_distance(x, K), exact_n)
        del x
    if approx_n:
        x = clustered(approx_n, centers, 2)
        print(f"vectors: {x.nbytes / 2**20:,.0f} MiB")
        (_, stats), _ = timed(f"{approx_index} (build + search + recall check)",
                              lambda: kth_neighbour_distance(x, K, index=approx_index), approx_n)
        print(f"recall@{K} against exact search on {stats['recall_queries']:,} sampled queries: "
              f"{stats['recall_at_k']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="real records for the indicators")
    parser.add_argument("--reward-n", type=int, default=2_000, help="records for the tiny reward model")
    parser.add_argument("--exact-n", type=int, default=100_000)
    parser.add_argument("--approx-n", type=int, default=1_000_000)
    parser.add_argument("--approx-index", default="ivf", choices=("ivf", "hnsw"))
    parser.add_argument("--skip-dense", action="store_true", help="skip the n x n baseline (needs 4·n² bytes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and faiss threads (default: theirs); 1 is far faster on a busy machine")
    args = parser.parse_args()
    import faiss
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, faiss threads {faiss.omp_get_max_threads()}, "
          f"load average {Path('/proc/loadavg').read_text().split()[0]} on {__import__('os').cpu_count()} CPUs")
    vectors = indicators(real_examples(args.n), min(args.reward_n, args.n))
    if not args.skip_dense:
        dense_baseline(vectors)
    at_scale(vectors, args.exact_n, args.approx_n, args.approx_index)


if __name__ == "__main__":
    main()
