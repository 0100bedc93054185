"""IFD scoring throughput: sftpick against the naive reference, and against the roofline.

One run, same model, same real records (../shared/data): prints tokens/s of
  - naive: the reference scripts' loop, one record at a time, `model(ids, labels=...)` twice;
  - sftpick: IFDScorer.score (length-sorted token-budget batches, cond+direct together,
    LM head only on scored positions), in this process;
  - sftpick --workers W: the local engine with W worker processes (threads split between them);
  - sftpick --packing: as sftpick, each batch's sequences in one row without padding;
and the roofline: matmul FLOP/s measured now ÷ (2 × parameters) tokens/s. Tokens are the
tokens both implementations run through the model (conditional + direct sequences).
Each figure is the median of --repeats runs; timings here swing ±20% run to run.

    python benchmarks/ifd_throughput.py [--records 48] [--repeats 3] [--model smollm2-135m] [--device cpu]
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from pathlib import Path

import torch

from sftpick.engines.stream import score_examples
from sftpick.examples import to_example
from sftpick.perplexity import SpanLoss
from sftpick.scorers.ifd import IFDScorer
from sftpick.templates import render_prompt

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = ("alpaca-cherry-5pct.json", "gsm8k-train.json", "gpteacher-roleplay.json", "gpteacher-toolformer.json")


def real_examples(n: int, seed: int = 0):
    rng = random.Random(seed)
    records = []
    for name in SOURCES:
        pool = json.loads((DATA / name).read_text())
        records += rng.sample(pool, n // len(SOURCES) + 1)
    rng.shuffle(records)
    return [to_example(r, i, "alpaca") for i, r in enumerate(records[:n])]


def matmul_flops(device: str, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a square fp32 (CPU) / bf16 (CUDA) matmul."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(8):
            a @ b
        _sync(device)
        best = max(best, 8 * 2 * size**3 / (time.perf_counter() - start))
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def naive_pass(scorer: IFDScorer, examples) -> None:
    """The reference scripts' loop (Superfiltering's data_analysis.py), batch size 1."""
    model, tokenizer, device = scorer.lm_.model, scorer.lm_.tokenizer, scorer.lm_.device
    for e in examples:
        prompt = render_prompt(e, scorer.template_, tokenizer)
        n_prompt = len(tokenizer.encode(prompt))
        whole = tokenizer.encode(prompt + e.response, return_tensors="pt", truncation=True,
                                 max_length=scorer.max_length).to(device)
        labels = whole.clone()
        labels[0, :n_prompt] = -100
        direct = tokenizer.encode(e.response, return_tensors="pt", truncation=True,
                                  max_length=scorer.max_length - n_prompt + 1).to(device)
        with torch.no_grad():
            model(whole, labels=labels).loss.item()
            model(direct, labels=direct).loss.item()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    scorer = IFDScorer(args.model, device=args.device)
    scorer.setup()
    examples = real_examples(args.records)
    tokens = int(scorer.cost(examples).sum())
    params = sum(p.numel() for p in scorer.lm_.model.parameters())
    threads = torch.get_num_threads()

    packed = copy.copy(scorer)  # the same model, its batches packed
    packed.loss_ = SpanLoss(scorer.lm_.model, pad_id=scorer.loss_.pad_id, packed=True)
    runs: dict[str, list[float]] = {"naive": [], "sftpick": [], "sftpick --packing": [],
                                    f"sftpick --workers {args.workers}": [], "roofline": []}
    for _ in range(args.repeats):  # interleaved, so drift hits every contender alike
        runs["roofline"].append(matmul_flops(scorer.lm_.device) / (2 * params))
        runs["naive"].append(tokens / timed(lambda: naive_pass(scorer, examples)))
        runs["sftpick"].append(tokens / timed(lambda: scorer.score(examples)))
        runs["sftpick --packing"].append(tokens / timed(lambda: packed.score(examples)))
        if args.workers > 1 and not args.device.startswith("cuda"):
            work = lambda: score_examples(examples, [scorer], cache_dir=None, progress=False,
                                          shard_size=max(1, len(examples) // (4 * args.workers)), workers=args.workers)
            runs[f"sftpick --workers {args.workers}"].append(tokens / timed(work))
    medians = {name: statistics.median(values) for name, values in runs.items() if values}
    roofline = medians.pop("roofline")

    print(f"model {args.model} ({params / 1e6:.1f}M parameters), device {scorer.lm_.device}, "
          f"{threads} threads, dtype {scorer.lm_.dtype}")
    print(f"{len(examples)} real records, {tokens} tokens per pass, median of {args.repeats} runs")
    print(f"roofline: {roofline * 2 * params / 1e9:.1f} GFLOP/s matmul -> {roofline:.0f} tokens/s")
    print(f"{'':28s} {'tokens/s':>9s} {'x naive':>8s} {'of roofline':>12s}")
    for name, rate in medians.items():
        print(f"{name:28s} {rate:9.0f} {rate / medians['naive']:8.2f} {rate / roofline:11.0%}")
    if args.json:
        args.json.write_text(json.dumps({"tokens": tokens, "roofline_tokens_per_s": roofline,
                                         "tokens_per_s": medians, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
