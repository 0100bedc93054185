"""Judge throughput: ratings/s with one request at a time against `--concurrency` requests in
flight, on the same server, the same records and the same prompt, in one run.

By default it starts `transformers serve` on loopback with the embedded SmolLM2-135M (as
tests/test_judge.py does) and stops it at the end; `--url URL --model NAME` measures a server
you run (vLLM, TGI, llama.cpp, a hosted API: `--key-env VAR` for its key). Each pass uses a
fresh scorer without a cache, so every rating is a request. The load average is printed with
the figures: on a shared machine they move with it.

    python benchmarks/judge_throughput.py [--records 16] [--concurrency 8] [--max-tokens 32]
        [--server-threads 1] [--continuous-batching] [--url URL --model NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # judge_servers: the loopback transformers serve of the tests

from judge_servers import embedded_model_folder, transformers_serve  # noqa: E402

from sftpick.examples import to_example  # noqa: E402
from sftpick.scorers.judge import JudgeScorer  # noqa: E402

DATA = ROOT / "tests" / "fixtures" / "real_alpaca.json"


def rate(url: str, model: str, examples: list, concurrency: int, args) -> tuple[float, list]:
    """Seconds to rate every example, and the outcomes (rating or reject reason)."""
    scorer = JudgeScorer(url, judge_model=model, judge_prompt=args.prompt, judge_key_env=args.key_env,
                         concurrency=concurrency, judge_max_tokens=args.max_tokens, judge_timeout=args.timeout)
    scorer.setup()
    started = time.perf_counter()
    result = scorer.score(examples)
    seconds = time.perf_counter() - started
    outcomes = [reason or rating for rating, reason in zip(result["judge"].tolist(), result["_reject"])]
    assert scorer.stats_["requests"] >= len(examples), scorer.stats_
    return seconds, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--prompt", default="alpagasus")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--server-threads", type=int, default=None, help="OMP threads of the started server")
    parser.add_argument("--continuous-batching", action="store_true", help="start the server with it")
    parser.add_argument("--url", help="measure this server instead of starting one")
    parser.add_argument("--model", help="the model --url serves")
    parser.add_argument("--key-env", help="variable holding --url's API key")
    args = parser.parse_args()

    records = json.loads(DATA.read_text())
    examples = [to_example(records[i % len(records)], i, "alpaca") for i in range(args.records)]
    if args.records > len(records):  # repeats would be cached by the engine, not here: each is a request
        print(f"note: {len(records)} distinct records, repeated to {args.records}")
    load_before = os.getloadavg()
    if args.url:
        server, model = nullcontext(args.url), args.model
    else:
        folder = embedded_model_folder()
        log = Path(tempfile.mkdtemp(prefix="judge-bench-")) / "serve.log"
        extra = ["--continuous-batching"] if args.continuous_batching else []
        server, model = transformers_serve(folder, log, threads=args.server_threads, extra=extra), str(folder)
    with server as url:
        sequential, first = rate(url, model, examples, 1, args)
        concurrent, second = rate(url, model, examples, args.concurrency, args)
    load_after = os.getloadavg()
    same = sum(a == b for a, b in zip(first, second))
    print(f"server: {'transformers serve (SmolLM2-135M, CPU)' if not args.url else args.url}"
          f"{' --continuous-batching' if args.continuous_batching else ''}, "
          f"{args.records} records, max_tokens {args.max_tokens}, prompt {args.prompt}")
    print(f"sequential (concurrency 1): {args.records / sequential:.2f} ratings/s ({sequential:.1f} s)")
    print(f"concurrency {args.concurrency}: {args.records / concurrent:.2f} ratings/s ({concurrent:.1f} s), "
          f"{sequential / concurrent:.2f}x")
    print(f"same outcome in both passes: {same}/{args.records}")
    print(f"load average (1, 5, 15 min) before: {_load(load_before)}, after: {_load(load_after)}; "
          f"{os.cpu_count()} CPUs")


def _load(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
