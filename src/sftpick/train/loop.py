"""The evaluation loop: fine-tune the base model on every arm for every seed, measure the
held-out loss of the base model and of each tuned model, and keep one result file per
fine-tune (`arms/<key>.json`, written atomically) so a killed run redoes only the missing
ones. The key is a hash of the training records' content (in order), the training
configuration, the base model and its revision, and the eval sets' content."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

from ..budget import parse_budget
from ..cache import config_hash
from ..console import make_console
from ..curation import MatchSettings
from ..curation.stage import test_index
from ..curation.steps import contaminated
from ..errors import DataError, OptionError, OverlapError
from ..io import read_dataset
from ..manifest import manifest_header
from ..models import LoadedLM
from ..writers import atomic_write
from .arms import Arm, Source, build_arms, count_overlap, file_names, find_overlap, make_source
from .data import encode
from .evaluate import EvalSet, eval_losses
from .finetune import FineTuned, TrainConfig, fine_tune
from .harness import HarnessPlan
from .summary import summarize, write_html
from .winrate import WinRatePlan

console = make_console()


def load_source(path: str | Path, lm: LoadedLM, config: TrainConfig, fmt: str | None = None) -> Source:
    """Read, reject and encode a file; an error when no record is left."""
    dataset = read_dataset(path, fmt)
    encoded, reasons = encode(dataset.examples, lm.tokenizer, config.template, config.max_length)
    source = make_source(dataset, encoded, reasons)
    if not source.examples:
        raise DataError(f"{path}: none of its {source.n_records} records can be used "
                        f"(rejected: {source.rejects}); a longer --max-length may help")
    return source


def drop_contaminated(sources: list[Source], tests: list[Path], match: MatchSettings) -> None:
    """Remove from each source the records that share long n-grams with a record of `tests`
    (curation/decontaminate.py), counted in `source.contaminated` and said; an error when a
    training file has nothing left."""
    index = test_index(tests, match)
    for source in sources:
        found = contaminated(source.examples, index)
        keep = [i for i, m in enumerate(found) if m is None]
        source.contaminated = [{"row": e.row, "matched": m} for e, m in zip(source.examples, found) if m is not None]
        source.examples, source.encoded = [source.examples[i] for i in keep], [source.encoded[i] for i in keep]
        if source.contaminated:
            console.print(f"decontaminate: dropped {len(source.contaminated)} records of {source.path} that match "
                          f"a test record (first: row {source.contaminated[0]['row']}, "
                          f"{source.contaminated[0]['matched']})", highlight=False)
        if not source.examples:
            raise DataError(f"{source.path}: every usable record matches a test record (--no-decontaminate "
                            "trains on them anyway)")


def load_eval_sets(paths: list[str | Path], lm: LoadedLM, config: TrainConfig) -> list[EvalSet]:
    sets = []
    for name, path in zip(file_names([str(p) for p in paths]), paths):
        source = load_source(path, lm, config)
        sets.append(EvalSet(name, source.path, source.sha256, source.encoded,
                            [e.content_hash for e in source.examples], [_where(e) for e in source.examples],
                            source.n_records, source.rejects))
    return sets


def check_overlap(sets: list[EvalSet], arms: list[Arm]) -> None:
    """Raise OverlapError naming the first eval record that an arm also trains on."""
    for eval_set in sets:
        found = find_overlap(eval_set.content_hashes, arms)
        if found:
            i, arm, j = found
            n = count_overlap(eval_set.content_hashes, arms)
            raise OverlapError(
                f"eval record {eval_set.path} {eval_set.locations[i]} also appears in arm {arm.name!r} "
                f"(seed {arm.seed}, {arm.source.path} {_where(arm.examples[j])}); {n} of the "
                f"{len(eval_set.content_hashes)} eval records are trained on. Remove them from the eval set, "
                "or pass --allow-overlap to evaluate anyway")


def _where(example) -> str:
    return f"row {example.row}" + (f", line {example.line}" if example.line else "")


def _eval_digest(sets: list[EvalSet]) -> dict:
    return {s.name: config_hash(s.content_hashes) for s in sets}


RECIPE = 2  # bump when training or evaluation changes for the same config, so old results are not reused


def arm_key(arm: Arm, config: TrainConfig, lm: LoadedLM, sets: list[EvalSet]) -> str:
    return config_hash({"recipe": RECIPE, "train": [e.content_hash for e in arm.examples],
                        "config": config.to_dict(), "model": lm.name, "revision": lm.revision,
                        "eval": _eval_digest(sets)})


def base_result(lm: LoadedLM, sets: list[EvalSet], config: TrainConfig, out: Path, token_budget: int) -> dict:
    """The base model's eval losses, cached like an arm's."""
    key = config_hash({"base": lm.name, "revision": lm.revision, "template": config.template,
                       "max_length": config.max_length, "eval": _eval_digest(sets)})
    path = out / "arms" / f"base-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    pad_id = _pad_id(lm.tokenizer)
    result = {"key": key, "eval_loss": eval_losses(lm.model, sets, pad_id=pad_id, token_budget=token_budget),
              "eval_tokens": {s.name: s.n_tokens for s in sets}}
    atomic_write(path, json.dumps(result, indent=2))
    return result


def run_arm(arm: Arm, lm: LoadedLM, config: TrainConfig, sets: list[EvalSet], out: Path, *,
            token_budget: int, progress: bool, save_model: bool, label: str,
            win_rates: WinRatePlan | None = None, harness: HarnessPlan | None = None) -> dict:
    """Fine-tune a fresh copy of the base model on `arm` and evaluate it (and have it answer the
    test prompts), unless done before."""
    config = replace(config, seed=arm.seed)
    key = arm_key(arm, config, lm, sets)
    path = out / "arms" / f"{key}.json"
    answered = win_rates is None or win_rates.has_answers(key)  # else the tuned model is needed again
    measured = harness is None or harness.has(key)
    if path.exists() and answered and measured:  # the same records, settings and model: perhaps another arm's
        return {**json.loads(path.read_text()), "name": arm.name, "kind": arm.kind, "source": arm.source.path,
                **({"accuracy": harness.load(key)} if harness else {}), "reused": True}
    model = copy.deepcopy(lm.model)
    tuned = fine_tune(model, lm.tokenizer, arm.encoded, config, progress=progress, label=label)
    losses = eval_losses(tuned.model, sets, pad_id=_pad_id(lm.tokenizer), token_budget=token_budget)
    if win_rates is not None:
        win_rates.answer(key, tuned.model, lm.tokenizer)
    accuracy = harness.run(key, tuned.model, lm.tokenizer) if harness is not None else None
    if save_model:
        tuned.model.save_pretrained(out / "models" / key)
        lm.tokenizer.save_pretrained(out / "models" / key)
    result = _arm_record(arm, key, config, tuned, losses)
    atomic_write(path, json.dumps(result, indent=2))
    del model, tuned
    return {**result, **({"accuracy": accuracy} if accuracy is not None else {}), "reused": False}


def _arm_record(arm: Arm, key: str, config: TrainConfig, tuned: FineTuned, losses: dict) -> dict:
    encoded = arm.encoded
    return {"name": arm.name, "kind": arm.kind, "seed": arm.seed, "key": key, "source": arm.source.path,
            "n_records": len(encoded), "n_tokens": sum(len(e.ids) for e in encoded),
            "n_response_tokens": sum(e.n_response for e in encoded), "eval_loss": losses,
            "train_loss_first": tuned.losses[0] if tuned.losses else None,
            "train_loss_last": tuned.losses[-1] if tuned.losses else None, "train_losses": tuned.losses,
            "steps": tuned.steps, "tokens_seen": tuned.tokens_seen, "seconds": round(tuned.seconds, 3),
            "tokens_per_second": round(tuned.tokens_seen / max(tuned.seconds, 1e-9), 1),
            "peak_memory_mib": round(tuned.peak_memory_mib, 1), "config": config.to_dict()}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def evaluate_arms(lm: LoadedLM, files: list[str | Path], baselines: list[str], pool: str | Path | None,
                  eval_paths: list[str | Path], out: Path, config: TrainConfig, *, seeds: int = 1,
                  fixed_seeds: int | None = None, size: int | str | None = None, allow_overlap: bool = False, progress: bool = True,
                  save_models: bool = False, token_budget: int | None = None, fmt: str | None = None,
                  command_config: dict | None = None, win_rates: WinRatePlan | None = None,
                  harness: HarnessPlan | None = None, decontaminate: list[Path] = (),
                  match: MatchSettings | None = None) -> dict:
    """Run every arm × seed; return the result (also written to `out/result.json`). Inputs are
    validated by `api.evaluate`; here only what needs the data (sizes, overlap) is checked."""
    token_budget = token_budget or (16384 if lm.device.startswith("cuda") else 1024)
    named = list(zip(file_names([str(f) for f in files]), [load_source(f, lm, config, fmt) for f in files]))
    pool_source = load_source(pool, lm, config, fmt) if pool is not None else None
    if decontaminate:
        drop_contaminated([s for _, s in named] + ([pool_source] if pool_source else []), decontaminate,
                          match or MatchSettings())
    size = _baseline_size(size, named, pool_source, baselines)
    sets = load_eval_sets(eval_paths, lm, config)
    arms = build_arms(named, baselines, pool_source, [config.seed + i for i in range(seeds)], size,
                      fixed_seeds)
    if not allow_overlap:
        check_overlap(sets, arms)
    overlap = {s.name: count_overlap(s.content_hashes, arms) for s in sets}
    _print_plan(arms, sets)
    base = base_result(lm, sets, config, out, token_budget)
    if harness is not None:
        base["accuracy"] = harness.run(f"base-{base['key']}", lm.model, lm.tokenizer)
    results = []
    for i, arm in enumerate(arms, start=1):
        label = f"{arm.name} seed {arm.seed} ({i}/{len(arms)})"
        results.append(run_arm(arm, lm, config, sets, out, token_budget=token_budget, progress=progress,
                               save_model=save_models, label=label, win_rates=win_rates, harness=harness))
        _print_arm(results[-1])
    result = {"base": {"model": lm.name, "revision": lm.revision, **base}, "arms": results,
              "eval_sets": {s.name: {"path": s.path, "n_records": len(s.encoded), "n_tokens": s.n_tokens,
                                     "rejects": s.rejects, "overlap": overlap[s.name]} for s in sets}}
    result["summary"] = summarize(result)
    if win_rates is not None:
        console.print(f"judging every arm against {win_rates.reference!r} on "
                      f"{sum(map(len, win_rates.prompt_sets.values()))} prompts, in both orders", highlight=False)
        result["win_rate"] = win_rates.judge(results)
        result["win_rate_settings"] = {**win_rates.settings(), "reference": win_rates.reference,
                                       "judge_model": win_rates.connection.judge_model,
                                       "judge_sampling": win_rates.connection.sampling()}
        for row in result["summary"]:
            row["win_rate"] = result["win_rate"].get(row["name"])
    atomic_write(out / "result.json", json.dumps(result, indent=2))
    write_html(result, result["summary"], out / "result.html")
    manifest = _manifest(lm, config, named, pool_source, sets, baselines, seeds, size, allow_overlap, token_budget)
    if command_config is not None:  # the whole command, so `--config manifest.json` replays it
        manifest["config"] = command_config
    manifest["fixed_seeds"] = seeds if fixed_seeds is None else fixed_seeds
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=2))
    return result


def _baseline_size(size: int | str | None, named: list[tuple[str, Source]], pool: Source | None,
                   baselines: list[str]) -> int | None:
    if not {"random", "longest"} & set(baselines):
        return size
    if size is not None:
        if str(size).strip().isdigit() and int(size) > len(pool.examples):
            raise OptionError(f"size={size} is larger than the pool's {len(pool.examples)} usable records ({pool.path})")
        size = parse_budget(size, len(pool.examples))
    elif named:
        size = len(named[0][1].examples)
    else:
        raise OptionError("--baseline random/longest needs a size: give a --train file (its size is used) or --size")
    if size > len(pool.examples):
        raise OptionError(f"size={size} is larger than the pool's {len(pool.examples)} usable records ({pool.path})")
    if size < 1:
        raise OptionError(f"size={size} should be >= 1 (the first --train file has no usable record)")
    return size


def _print_plan(arms: list[Arm], sets: list[EvalSet]) -> None:
    for s in sets:
        console.print(f"eval set {s.name}: {len(s.encoded)} records, {s.n_tokens:,} response tokens"
                      + (f", rejected {s.rejects}" if s.rejects else ""), highlight=False)
    console.print(f"{len(arms)} fine-tunes ({len({a.name for a in arms})} arms × {len({a.seed for a in arms})} "
                  "seeds)", highlight=False)


def _print_arm(result: dict) -> None:
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result["eval_loss"].items())
    how = "reused" if result["reused"] else f"{result['seconds']:.0f}s, peak memory {result['peak_memory_mib']:,.0f} MiB"
    console.print(f"  {result['name']} seed {result['seed']}: {result['n_records']} records, "
                  f"{result['n_response_tokens']:,} response tokens; eval loss {losses} ({how})", highlight=False)


def training_header(lm: LoadedLM, config: TrainConfig) -> dict:
    """The manifest's header, the model tuned and the training settings."""
    return {
        **manifest_header(),
        "model": {"name": lm.name, "revision": lm.revision, "device": lm.device, "dtype": lm.dtype,
                  "training_precision": "bf16 autocast" if lm.device.startswith("cuda") else "fp32"},
        "config": config.to_dict()}


def file_entry(source, used: int) -> dict:
    """A training file, pool or eval set as a manifest names it: where, which bytes, how many
    records it had and used, and what it rejected."""
    return {"path": str(Path(source.path).resolve()), "sha256": source.sha256,
            "n_records": source.n_records, "used": used, "rejects": source.rejects,
            **({"contaminated": source.contaminated} if getattr(source, "contaminated", None) else {})}


def _manifest(lm, config, named, pool, sets, baselines, seeds, size, allow_overlap, token_budget) -> dict:
    return {
        **training_header(lm, config), "seeds": [config.seed + i for i in range(seeds)], "baselines": baselines,
        "baseline_size": size, "allow_overlap": allow_overlap, "eval_token_budget": token_budget,
        "train_files": {name: file_entry(s, len(s.examples)) for name, s in named},
        "pool": None if pool is None else file_entry(pool, len(pool.examples)),
        "eval_sets": {s.name: file_entry(s, len(s.encoded)) for s in sets},
    }
