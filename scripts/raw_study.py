"""Does selection beat random on a raw pool? (issue 22's study, docs/evaluation-raw.md.)

The earlier study (docs/evaluation.md) drew its pool from Cherry LLM's IFD-selected 5% of
Alpaca, so it could show little. This one mixes the uncurated sources in ../shared/data
(GSM8K, GPTeacher Toolformer and Roleplay, as they are, duplicates and odd records included)
with Alpaca records, seeded; held-out records come from the same mixture (never in the pool,
by content). Methods: IFD top-k in both variants (Superfiltering's and Cherry LLM's, each
scored once), Instruction Mining's rule (the paper's coefficients without its reward term:
no reward model is installed here; lowest estimated loss first), k-center, DEITA's
diversity walk and LIFT (both ranked by IFD: no reward model or strong judge runs here),
the longest responses, random (several draws) and the full pool, at two budgets; every arm
fine-tuned with the same settings (`sftpick eval`). Measures: held-out loss, and with
--prompts the judged win rate against random on one test set.
Resumable: every stage is cached (scores, fine-tunes, answers, verdicts).

CPU (what docs/evaluation-raw.md ran), the judge being SmolLM2-135M-Instruct served on loopback:
    M=$(cd tests && python -c 'import judge_servers as j; print(j.embedded_model_folder())')
    OMP_NUM_THREADS=1 python -m transformers.cli.transformers serve $M --host 127.0.0.1 --port 8765 --device cpu &
    OMP_NUM_THREADS=1 python scripts/raw_study.py --judge-url http://127.0.0.1:8765/v1 --judge-model $M \
        --prompts ../shared/data/eval/vicuna_test_set.jsonl
GPU at the papers' scale: python scripts/raw_study.py --per-source 5000 --budgets 5%,10% --device cuda \
    --epochs 3 --lora-rank 0 --max-length 1024 --seeds 5 --prompts ../shared/data/eval/vicuna_test_set.jsonl
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import sftpick
from studies import SOURCES, StageClock, save_png, study_parser, training_config, vs_random_figure
from sftpick.io import read_dataset
from sftpick.scorers.rule import DEFAULT_RULE
from sftpick.selection import select_subset
from sftpick.writers import atomic_write


def build_data(data: Path, out: Path, per_source: int, heldout: int, seed: int) -> dict:
    """pool.jsonl (each source's records as they are, duplicates included) and heldout.jsonl
    (records of the same sources whose content is nowhere in the pool)."""
    rng = np.random.default_rng(seed)
    pool, held, counts = [], [], {}
    for name, file in SOURCES.items():
        examples = read_dataset(data / file).examples
        order = rng.permutation(len(examples))
        kept = [examples[i] for i in order[:per_source]]
        contents = {e.content_hash for e in kept}
        spare = [examples[i] for i in order[per_source:] if examples[i].content_hash not in contents]
        held += [e.record for e in spare[: heldout // len(SOURCES)]]
        pool += [e.record for e in kept]
        counts[name] = {"pool": len(kept), "distinct": len(contents), "heldout": min(len(spare), heldout // 4)}
    atomic_write(out / "pool.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                             for r in (pool[i] for i in rng.permutation(len(pool)))))
    atomic_write(out / "heldout.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in held))
    return counts


def main() -> None:
    parser = study_parser(__doc__, work=".work/raw-study", per_source=100, heldout=100, seeds=5, max_length=256,
                          epochs=1.0, lr=1e-4)
    parser.add_argument("--budgets", default="5%,15%")
    parser.add_argument("--prompts", type=Path, default=None, help="test prompts for the win rate (first budget)")
    parser.add_argument("--max-prompts", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--judge-url", default=None)
    parser.add_argument("--judge-model", default=None)
    args = parser.parse_args()
    work = args.work
    clock = StageClock(work, args)
    with clock("data"):
        counts = build_data(args.data, work / "data", args.per_source, args.heldout, args.seed)
    pool, heldout = work / "data" / "pool.jsonl", work / "data" / "heldout.jsonl"
    common = {"model": args.model, "device": args.device, "progress": False, "max_length": args.max_length}
    for variant in ("superfiltering", "cherry"):
        with clock(f"score ifd ({variant})"):
            sftpick.score(pool, work / f"scores-{variant}.parquet", scorers=["ifd", "len"], variant=variant, **common)
    # Instruction Mining's rule without its reward term (no reward model is installed here)
    rule = {**json.loads(DEFAULT_RULE.read_text()), "name": "instruction-mining-without-reward"}
    rule["terms"] = [t for t in rule["terms"] if t["column"] != "reward"]
    atomic_write(work / "rule-without-reward.json", json.dumps(rule, indent=2))
    with clock("score instruction mining (len, knn_6, rule)"):
        sftpick.score(pool, work / "scores-rule.parquet", scorers=["len", "knn_6", "rule"],
                      rule_file=str(work / "rule-without-reward.json"), device=args.device, progress=False)
    prompts = None
    if args.prompts:
        prompts = work / "data" / f"{args.prompts.stem}.jsonl"
        lines = args.prompts.read_text().splitlines()[: args.max_prompts]
        atomic_write(prompts, "\n".join(lines) + "\n")
    config = training_config(args)
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "pool": counts, "budgets": {}}
    for index, budget in enumerate(args.budgets.split(",")):
        folder = work / f"budget-{budget.replace('%', 'pct')}"
        methods = {"ifd-superfiltering": ("superfiltering", {"strategy": "topk", "by": "ifd"}),
                   "ifd-cherry": ("cherry", {"strategy": "topk", "by": "ifd"}),
                   "instruction-mining": ("rule", {"strategy": "topk", "by": "rule", "ascending": True}),
                   "kcenter": ("superfiltering", {"strategy": "kcenter"}),
                   "deita": ("superfiltering", {"strategy": "deita", "by": "ifd"}),
                   "lift": ("superfiltering", {"strategy": "lift", "by": "ifd"}),
                   "longest": ("superfiltering", {"strategy": "topk", "by": "len"})}
        subsets = {}
        for name, (variant, options) in methods.items():
            subsets[name] = folder / "subsets" / name / "selected.jsonl"
            with clock(f"{budget} select {name}"):
                select_subset(pool, work / f"scores-{variant}.parquet", subsets[name], budget=budget, **options)
        judge = {"prompts": [prompts], "judge_url": args.judge_url, "judge_model": args.judge_model,
                 "max_new_tokens": args.max_new_tokens, "judge_max_tokens": 8, "concurrency": 2,
                 "judge_timeout": 300.0} if prompts is not None and index == 0 and args.judge_url else {}
        with clock(f"{budget} fine-tune and evaluate"):
            result = sftpick.evaluate(list(subsets.values()), work / "eval",  # one cache: full trains once
                                      eval_sets=[heldout], baselines=["random", "full"], pool=pool, seeds=args.seeds,
                                      fixed_seeds=1, size=budget, config=config, model=args.model, device=args.device,
                                      progress=False, **judge)
        atomic_write(folder / "result.json", json.dumps(result, indent=2))
        full = next(r["eval"]["heldout"]["vs_random"] for r in result["summary"] if r["name"] == "full")
        title = (f"Raw pool, {budget} of {sum(c['pool'] for c in counts.values())} records: held-out loss against "
                 f"random (the full pool, not shown: {full:+.3f})")
        png = args.docs / f"evaluation-raw-{budget.replace('%', 'pct')}.png"
        save_png(vs_random_figure(result["summary"], title, leave_out=("full",)), png, 1000, 480)
        report["budgets"][budget] = {"summary": result["summary"], "base": result["base"],
                                     "win_rate": result.get("win_rate"),
                                     "win_rate_settings": result.get("win_rate_settings")}
    report["times_seconds"] = clock.seconds
    atomic_write(args.docs / "evaluation-raw-result.json", json.dumps(report, indent=2, default=str))
    print(json.dumps(clock.seconds, indent=2))


if __name__ == "__main__":
    main()
