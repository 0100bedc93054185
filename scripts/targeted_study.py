"""Targeted selection on a raw mixed pool (issue 21's study, docs/targeted.md): does choosing
for a task from a few of its examples (LESS, RDS+) beat random, and the task-agnostic
methods (TAGCOS, DiverseEvol, IFD top-k, longest)?

The pool is a seeded mixture of four sources from ../shared/data (GSM8K, GPTeacher Toolformer
and Roleplay as they are, and Cherry's Alpaca 5%), each record tagged with its `source`; the
targets are a few examples of GSM8K and, apart, of Roleplay; the held-out sets are records of
those two sources kept out of the pool and the targets (by content). Every arm keeps the same
number of records and is fine-tuned with `sftpick eval` (random: several draws); the result
is the held-out loss against random with 95% intervals, the share of each arm's records that
come from the target's source, and the wall time of every stage. Resumable: every stage is
cached (scores, strategies' stages, fine-tunes), so run it again after an interruption.

CPU (docs/targeted.md):  python scripts/targeted_study.py
GPU at the papers' scale: python scripts/targeted_study.py --per-source 10000 --budget 5% --device cuda \
    --epochs 3 --lora-rank 128 --less-dim 8192 --warmup-epochs 4 --warmup-fraction 0.05 \
    --warmup-batch-size 32 --max-length 1024 --seeds 5
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import sftpick
from studies import SOURCES, StageClock, save_png, study_parser, training_config, vs_random_figure
from sftpick.budget import parse_budget
from sftpick.io import read_dataset
from sftpick.selection import select_subset
from sftpick.writers import atomic_write

TARGETS = ("gsm8k", "roleplay")


def build_data(data: Path, out: Path, per_source: int, n_targets: int, heldout: int, seed: int) -> dict:
    """pool.jsonl, <source>-targets.jsonl and <source>-heldout.jsonl; no record (by content) in
    two of them. Returns the counts."""
    rng = np.random.default_rng(seed)
    pool, seen, counts = [], set(), {}
    for name, file in SOURCES.items():
        examples = read_dataset(data / file).examples
        order = rng.permutation(len(examples))
        fresh = []
        for i in order:  # each content once across the whole study (the sources hold duplicates)
            if examples[i].content_hash not in seen:
                seen.add(examples[i].content_hash)
                fresh.append(examples[i].record)
        if name in TARGETS:
            _write(out / f"{name}-heldout.jsonl", fresh[:heldout])
            _write(out / f"{name}-targets.jsonl", fresh[heldout:heldout + n_targets])
            fresh = fresh[heldout + n_targets:]
        pool += [{**record, "source": name} for record in fresh[:per_source]]
        counts[name] = min(per_source, len(fresh))
    rng.shuffle(pool)
    _write(out / "pool.jsonl", pool)
    return counts


def _write(path: Path, records: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def source_share(subset: Path) -> dict[str, float]:
    sources = [json.loads(line)["source"] for line in subset.read_text().splitlines() if line.strip()]
    return {name: sources.count(name) / max(len(sources), 1) for name in SOURCES}


def main() -> None:
    parser = study_parser(__doc__, work=".work/targeted", per_source=60, heldout=40, seeds=3, max_length=192,
                          epochs=3.0, lr=2e-4)
    parser.add_argument("--targets", type=int, default=8, help="target examples of each target source")
    parser.add_argument("--budget", default="24")
    parser.add_argument("--less-dim", type=int, default=1024, help="LESS, TAGCOS: projection dimensions")
    parser.add_argument("--warmup-epochs", type=int, default=2, help="LESS, TAGCOS: warmup epochs (checkpoints)")
    parser.add_argument("--warmup-fraction", type=float, default=0.15, help="LESS, TAGCOS: warmup share of the pool")
    parser.add_argument("--warmup-batch-size", type=int, default=8)
    parser.add_argument("--evol-rounds", type=int, default=3,
                        help="DiverseEvol: the budget in this many steps (a random start, then rounds)")
    parser.add_argument("--methods", default="ifd,longest,less,rds,tagcos,diverse-evol")
    args = parser.parse_args()
    work = args.work
    clock = StageClock(work, args)
    with clock("data"):
        counts = build_data(args.data, work / "data", args.per_source, args.targets, args.heldout, args.seed)
    pool = work / "data" / "pool.jsonl"
    common = {"model": args.model, "device": args.device, "progress": False}
    with clock("score ifd,len"):
        sftpick.score(pool, work / "scores.parquet", scorers=["ifd", "len"], max_length=args.max_length, **common)

    model = {"model": args.model, "device": args.device, "max_length": args.max_length}
    gradients = {**model, "lora_rank": args.lora_rank, "less_dim": args.less_dim, "warmup_epochs": args.warmup_epochs,
                 "warmup_fraction": args.warmup_fraction, "warmup_batch_size": args.warmup_batch_size}
    budget = parse_budget(args.budget, sum(counts.values()))
    step = -(-budget // args.evol_rounds)
    evolve = {**model, "initial": budget - step * (args.evol_rounds - 1), "per_round": step,
              "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "lora_rank": args.lora_rank}
    targets = {t: str(work / "data" / f"{t}-targets.jsonl") for t in TARGETS}
    plans = {"ifd": [("ifd", {"strategy": "topk", "by": "ifd"})],
             "longest": [("longest", {"strategy": "topk", "by": "len"})],  # Long Is More: the longest responses
             "less": [(f"less-{t}", {"strategy": "less", "target": targets[t], **gradients}) for t in TARGETS],
             "rds": [(f"rds-{t}", {"strategy": "rds", "target": targets[t], **model}) for t in TARGETS],
             "tagcos": [("tagcos", {"strategy": "tagcos", **gradients})],
             "diverse-evol": [("diverse-evol", {"strategy": "diverse-evol", **evolve})]}
    arms = {}
    for method in args.methods.split(","):
        for name, options in plans[method]:
            arms[name] = work / "subsets" / name / "selected.jsonl"
            with clock(f"select {name}"):
                select_subset(pool, work / "scores.parquet", arms[name], budget=budget, **options)
    with clock("fine-tune and evaluate"):
        result = sftpick.evaluate(list(arms.values()), work / "eval",
                                  eval_sets=[work / "data" / f"{t}-heldout.jsonl" for t in TARGETS],
                                  baselines=["random"], pool=pool, seeds=args.seeds, fixed_seeds=1, size=budget,
                                  config=training_config(args), model=args.model, device=args.device, progress=False)

    shares = {name: source_share(path) for name, path in arms.items()}
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "pool": counts, "times_seconds": clock.seconds,
              "source_share": shares, "summary": result["summary"], "base": result["base"]}
    atomic_write(args.docs / "targeted-result.json", json.dumps(report, indent=2, default=str))
    title = f"Targeted selection: {budget} of {sum(counts.values())} records, held-out loss against random"
    save_png(vs_random_figure(result["summary"], title), args.docs / "targeted.png", 1100, 560)
    print(json.dumps({"seconds": clock.seconds, "shares": shares}, indent=2))


if __name__ == "__main__":
    main()
