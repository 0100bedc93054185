"""The public Python API of the evaluation loop: `evaluate` (fine-tune on subsets and
baselines, compare held-out loss) and `rule_experiments` (Instruction Mining's experiments).
Input is validated here, once, before any model loads."""
from __future__ import annotations

from pathlib import Path

from ..io import UnreadableInput


def evaluate(train: list[str | Path], output_dir: str | Path, *, eval_sets: list[str | Path],
             baselines: list[str] | None = None, pool: str | Path | None = None, seeds: int = 1,
             fixed_seeds: int | None = None, size: int | str | None = None, config=None, model: str = "smollm2-135m", device: str = "auto",
             allow_overlap: bool = False, save_models: bool = False, progress: bool = True,
             fmt: str | None = None, trust_remote_code: bool = False) -> dict:
    """Fine-tune `model` on each `train` file and each baseline (`random`, `longest`, `full`
    subsets of `pool`), `seeds` times each, and compare held-out loss on `eval_sets`. Arms whose
    records do not change with the seed (files, longest, full) are fine-tuned `fixed_seeds`
    times (default: `seeds`): random subsets vary by draw and by training seed, the others by
    training seed alone, so fewer of their fine-tunes buy most of the interval's width.
    Writes `result.json`, `result.html`, `manifest.json` and one `arms/<key>.json` per
    fine-tune under `output_dir`; returns the result. `config`: a `TrainConfig`, a dict of
    its fields, or None for the defaults."""
    from ..models import load_causal_lm
    from .loop import evaluate_arms

    config = check_evaluate(train, eval_sets, baselines or [], pool, seeds, config, fixed_seeds)
    lm = load_causal_lm(model, device=device, dtype="float32", trust_remote_code=trust_remote_code)
    if config.template == "chat" and not getattr(lm.tokenizer, "chat_template", None):
        raise ValueError(f"template='chat' needs a chat template, and {model!r}'s tokenizer has none")
    return evaluate_arms(lm, list(train), list(baselines or []), pool, list(eval_sets), Path(output_dir), config,
                         seeds=seeds, fixed_seeds=fixed_seeds, size=size, allow_overlap=allow_overlap, progress=progress,
                         save_models=save_models, fmt=fmt)


def check_evaluate(train: list, eval_sets: list, baselines: list[str], pool, seeds: int, config,
                   fixed_seeds: int | None = None):
    """Everything that can be checked before a model loads; returns the TrainConfig."""
    from .arms import BASELINES

    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r}; valid baselines: {', '.join(BASELINES)}")
    if seeds < 1:
        raise ValueError(f"seeds={seeds} should be >= 1")
    if fixed_seeds is not None and not 1 <= fixed_seeds <= seeds:
        raise ValueError(f"fixed_seeds={fixed_seeds} should be between 1 and seeds={seeds}")
    if not train and not baselines:
        raise ValueError("nothing to fine-tune: give at least one --train file or --baseline")
    if not eval_sets:
        raise ValueError("no eval set: give at least one --eval-set file")
    if baselines and pool is None:
        raise ValueError(f"--baseline {baselines[0]} needs --pool (the records the baselines are drawn from)")
    _check_files([*train, *eval_sets, *([pool] if pool is not None else [])])
    return _train_config(config)


def _check_files(paths: list) -> None:
    for path in paths:
        if not Path(path).is_file():
            raise UnreadableInput(f"{path}: no such file")


def _train_config(config):
    """A TrainConfig from a TrainConfig, a dict of its fields or None (the defaults); checked."""
    from .finetune import TrainConfig, check_config, train_config

    if isinstance(config, TrainConfig):
        check_config(config)
        return config
    return train_config(**(config or {}))


def rule_experiments(pools: list[str | Path], output: str | Path, *, eval_set: str | Path, datasets: int = 24,
                     min_size: int = 200, max_size: int = 1000, seed: int = 0, config=None,
                     model: str = "smollm2-135m", device: str = "auto", indicators: list[str] | None = None,
                     progress: bool = True, fmt: str | None = None, trust_remote_code: bool = False,
                     **assess_options) -> list[dict]:
    """Instruction Mining's experiments: draw `datasets` training sets of `min_size` to
    `max_size` records from the `pools` (each file a source, mixed in random proportions),
    fine-tune `model` on each, and write `output` (CSV: one row per dataset with its
    indicator means and eval loss on `eval_set`), the input of `rule fit`. Resumable: a
    dataset whose fine-tune is done is not redone. `assess_options` go to `assess`
    (reward_model, embedder, embed_text, knn_index)."""
    from ..assess import default_indicators
    from ..models import load_causal_lm
    from .experiments import run_experiments

    k = assess_options.get("knn_k") or 6
    checks = [(datasets >= 1, f"datasets={datasets} should be >= 1"),
              (min_size >= k + 2, f"min_size={min_size} should be >= {k + 2} (knn_{k} needs {k} other records)"),
              (max_size >= min_size, f"max_size={max_size} should be >= min_size={min_size}"),
              (bool(pools), "no pool: give at least one POOL file")]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    _check_files([*pools, eval_set])
    config = _train_config(config)
    names = list(dict.fromkeys([*(indicators or []), *default_indicators(assess_options)]))
    lm = load_causal_lm(model, device=device, dtype="float32", trust_remote_code=trust_remote_code)
    return run_experiments(lm, list(pools), eval_set, Path(output), config, datasets=datasets, min_size=min_size,
                           max_size=max_size, seed=seed, indicators=names,
                           assess_options={"model": model, "device": device, "fmt": fmt, **assess_options},
                           progress=progress, fmt=fmt)
