"""The public Python API of the evaluation loop: `evaluate` (fine-tune on subsets and
baselines, compare held-out loss) and `rule_experiments` (Instruction Mining's experiments).
Input is validated here, once, before any model loads."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..curation import MatchSettings
from ..errors import OptionError, UnreadableInput
from ..examples import FORMATS
from ..io.prompts import load_prompts
from ..models import device_option, model_option, trust_remote_code_option
from ..options import option, option_values, settings_from
from ..scorers.judge import JudgeConnection
from .arms import BASELINES, file_names
from .config import TrainConfig, check_config, train_config
from .harness import HarnessPlan, HarnessSettings, check_tasks
from .winrate import WinRatePlan


@dataclass(kw_only=True)
class TrainingRunSettings:
    """What every command that fine-tunes shares: the model, where it runs, how files are read."""

    model: str = model_option()
    device: str = device_option()
    fmt: str | None = option(None, "alpaca | sharegpt | openai (default: detect).", flags=("--format",),
                             choices=FORMATS)
    trust_remote_code: bool = trust_remote_code_option()
    progress: bool = option(True, "Show progress.")


@dataclass(kw_only=True)
class WinRateSettings(JudgeConnection):
    """Judged win rates (train/winrate.py): test prompts, the arm judged against, the judge."""

    prompts: list[Path] = option([], "Test prompts (JSONL with a text or prompt field, as Cherry LLM's test sets, or "
                                     "records); each arm's model answers them and a judge compares the answers "
                                     "with the reference arm's; repeatable, reported apart.", repeat=True)
    reference: str = option("random", "The arm the others are judged against: random, longest, full, or a --train "
                                      "file's arm name.")
    max_new_tokens: int = option(256, "Tokens each answer may have (greedy decoding).", ge=1)


@dataclass(kw_only=True)
class HeldOutSettings(MatchSettings):
    """Where an evaluation writes, what it measures held-out loss on, and how often it repeats."""

    output_dir: Path = option(help="Output folder (result.json, result.html, manifest.json, arms/).",
                              flags=("-o", "--output-dir"))
    eval_sets: list[Path] = option([], "Held-out records (any supported format); repeat for several, reported "
                                       "apart.", flags=("--eval-set",), repeat=True)
    seeds: int = option(1, "Fine-tunes per arm (seeds --seed, --seed+1, …); random draws a new subset per seed.",
                        ge=1)
    fixed_seeds: int | None = option(None, "Fine-tunes of the arms whose records do not change with the seed "
                                           "(--train files, longest, full); default: --seeds.", ge=1)
    allow_overlap: bool = option(False, "Evaluate even when eval records are also training records.")
    decontaminate: bool = option(True, "Drop training and pool records that share long n-grams with a record of "
                                       "an --eval-set or --prompts file (a study's --target too) before any "
                                       "fine-tune: evidence from a leaked test set is false evidence (off with "
                                       "--allow-overlap too).")
    save_models: bool = option(False, "Keep every tuned model under OUTPUT_DIR/models/<key>/ (off: results only).")


@dataclass(kw_only=True)
class EvalSettings(TrainingRunSettings, WinRateSettings, HarnessSettings, HeldOutSettings):
    """`sftpick eval`: the arms to fine-tune and the held-out sets (training settings apart)."""

    train: list[Path] = option([], "A training file (e.g. a selected subset): one arm each; repeatable.",
                               repeat=True)
    baselines: list[str] = option([], "random | longest | full, drawn from --pool; repeatable.",
                                  flags=("--baseline",), repeat=True)
    pool: Path | None = option(None, "Records the baselines are drawn from.")
    size: str | None = option(None, "Size of the random/longest baselines (count, fraction or % of the pool; "
                                    "default: the first --train file's).")


def evaluate(train: list[str | Path], output_dir: str | Path, *, config=None, **options) -> dict:
    """Fine-tune `model` on each `train` file and each baseline (`random`, `longest`, `full`
    subsets of `pool`), `seeds` times each, and compare held-out loss on `eval_sets`. Arms whose
    records do not change with the seed (files, longest, full) are fine-tuned `fixed_seeds`
    times (default: `seeds`): random subsets vary by draw and by training seed, the others by
    training seed alone, so fewer of their fine-tunes buy most of the interval's width.
    Writes `result.json`, `result.html`, `manifest.json` and one `arms/<key>.json` per
    fine-tune under `output_dir`; returns the result. `config`: a `TrainConfig`, a dict of
    its fields, or None (the defaults); training settings may also be given as keywords
    (`lr=1e-4`). `options`: the settings of `EvalSettings`."""
    from ..models import load_causal_lm
    from .loop import evaluate_arms

    settings, config = check_evaluate(train, output_dir, config, options)
    lm = load_causal_lm(settings.model, device=settings.device, dtype="float32",
                        trust_remote_code=settings.trust_remote_code)
    if config.template == "chat" and not getattr(lm.tokenizer, "chat_template", None):
        raise OptionError(f"template='chat' needs a chat template, and {settings.model!r}'s tokenizer has none")
    command = {"command": "eval", **option_values(settings), **config.to_dict()}
    return evaluate_arms(lm, settings.train, settings.baselines, settings.pool, settings.eval_sets,
                         settings.output_dir, config, seeds=settings.seeds, fixed_seeds=settings.fixed_seeds,
                         size=settings.size, allow_overlap=settings.allow_overlap, progress=settings.progress,
                         save_models=settings.save_models, fmt=settings.fmt, command_config=command,
                         win_rates=_win_rate_plan(settings, config),
                         harness=HarnessPlan(settings, Path(settings.output_dir)) if settings.tasks else None,
                         decontaminate=test_sets(settings), match=settings)


def test_sets(settings: HeldOutSettings, *extra: Path) -> list[Path]:
    """The files whose records must not be trained on: the eval sets, the test prompts and
    `extra` (a study's targets); none with `decontaminate` off, or with `allow_overlap` (the
    user means to train on eval records)."""
    if not settings.decontaminate or settings.allow_overlap:
        return []
    return [*settings.eval_sets, *getattr(settings, "prompts", []), *extra]


def _win_rate_plan(settings: EvalSettings, config: TrainConfig) -> WinRatePlan | None:
    if not settings.prompts:
        return None
    sets = dict(zip(file_names([str(p) for p in settings.prompts]), map(load_prompts, settings.prompts)))
    return WinRatePlan(sets, settings, settings.reference, config.template, settings.max_new_tokens,
                       Path(settings.output_dir))


def check_evaluate(train: list, output_dir, config, options: dict) -> tuple[EvalSettings, TrainConfig]:
    """Everything that can be checked before a model loads: the settings and the TrainConfig."""
    settings, rest = settings_from(EvalSettings, {"train": list(train), "output_dir": output_dir, **options})
    config = _train_config(config, rest)
    if settings.fixed_seeds is not None and settings.fixed_seeds > settings.seeds:
        raise OptionError(f"fixed_seeds={settings.fixed_seeds} should be between 1 and seeds={settings.seeds}")
    if not settings.train and not settings.baselines:
        raise OptionError("nothing to fine-tune: give at least one --train file or --baseline")
    if not settings.eval_sets:
        raise OptionError("no eval set: give at least one --eval-set file")
    unknown = [b for b in settings.baselines if b not in BASELINES]
    if unknown:
        raise OptionError(f"unknown baseline {unknown[0]!r}; valid baselines: {', '.join(BASELINES)}")
    if settings.baselines and settings.pool is None:
        raise OptionError(f"--baseline {settings.baselines[0]} needs --pool (the records the baselines are drawn "
                          "from)")
    _check_files([*settings.train, *settings.eval_sets, *([settings.pool] if settings.pool is not None else [])])
    if settings.prompts:
        _check_win_rates(settings)
    if settings.tasks:
        check_tasks(settings)
    return settings, config


def _check_win_rates(settings: EvalSettings) -> None:
    """The judge reachable in principle, the prompt files readable, the reference an arm."""
    settings.check_connection("eval's win rates (--prompts)")
    _check_files(settings.prompts)
    for path in settings.prompts:
        load_prompts(path)
    arms = [*file_names([str(t) for t in settings.train]), *settings.baselines]
    if settings.reference not in arms:
        raise OptionError(f"reference={settings.reference!r} is none of the arms ({', '.join(arms)}): the win rates "
                          "judge every arm against it; add --baseline random, or name a --train file's arm")


def _check_files(paths: list) -> None:
    for path in paths:
        if not Path(path).is_file():
            raise UnreadableInput(f"{path}: no such file")


def _train_config(config, options: dict | None = None) -> TrainConfig:
    """A TrainConfig from a TrainConfig, a dict of its fields or None (the defaults), with the
    training settings among `options` on top; checked. Any other option is an error."""
    options = options or {}
    if isinstance(config, TrainConfig):
        config = config.to_dict()
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise OptionError(f"unknown option {unknown[0]}; the training settings are: {', '.join(sorted(names))}")
    merged = train_config(**{**(config or {}), **options})
    check_config(merged)
    return merged


@dataclass(kw_only=True)
class ExperimentSettings(TrainingRunSettings):
    """`sftpick rule experiments` (training settings and the indicator scorers' options apart)."""

    pools: list[Path] = option(help="Pool files; each is a source the datasets mix.", argument=True)
    output: Path = option(help="Experiments CSV (input of `rule fit`); its runs go to <stem>.runs/.",
                          flags=("-o", "--output"))
    eval_set: Path = option(help="Held-out records whose loss is the target.")
    datasets: int = option(24, "Training sets to draw, fine-tune and evaluate.", ge=1)
    min_size: int = option(200, "Smallest drawn dataset (records).", ge=1)
    max_size: int = option(1000, "Largest drawn dataset (records).", ge=1)
    draw_seed: int = option(0, "Seed of the draws (dataset i uses default_rng([seed, i])).")
    indicators: list[str] = option([], "Extra indicator scorers, comma-separated (e.g. ppl).")


def rule_experiments(pools: list[str | Path], output: str | Path, *, config=None, **options) -> list[dict]:
    """Instruction Mining's experiments: draw `datasets` training sets of `min_size` to
    `max_size` records from the `pools` (each file a source, mixed in random proportions),
    fine-tune `model` on each, and write `output` (CSV: one row per dataset with its
    indicator means and eval loss on `eval_set`), the input of `rule fit`. Resumable: a
    dataset whose fine-tune is done is not redone. Options that are neither settings of
    `ExperimentSettings` nor training settings go to `assess` (reward_model, embedder, …)."""
    from ..assess import default_indicators
    from ..models import load_causal_lm
    from .experiments import run_experiments

    settings, rest = settings_from(ExperimentSettings, {"pools": list(pools), "output": output,
                                                        "draw_seed": options.pop("seed", 0), **options})
    names = {f.name for f in fields(TrainConfig)}
    config = _train_config(config, {k: v for k, v in rest.items() if k in names})
    assess_options = {k: v for k, v in rest.items() if k not in names and v is not None}
    k = assess_options.get("knn_k") or 6
    checks = [(settings.min_size >= k + 2, f"min_size={settings.min_size} should be >= {k + 2} "
                                           f"(knn_{k} needs {k} other records)"),
              (settings.max_size >= settings.min_size,
               f"max_size={settings.max_size} should be >= min_size={settings.min_size}"),
              (bool(settings.pools), "no pool: give at least one POOL file")]
    for ok, message in checks:
        if not ok:
            raise OptionError(message)
    _check_files([*settings.pools, settings.eval_set])
    indicators = list(dict.fromkeys([*settings.indicators, *default_indicators(assess_options)]))
    lm = load_causal_lm(settings.model, device=settings.device, dtype="float32",
                        trust_remote_code=settings.trust_remote_code)
    return run_experiments(lm, settings.pools, settings.eval_set, settings.output, config,
                           datasets=settings.datasets, min_size=settings.min_size, max_size=settings.max_size,
                           seed=settings.draw_seed, indicators=indicators,
                           assess_options={"model": settings.model, "device": settings.device, "fmt": settings.fmt,
                                           **assess_options},
                           progress=settings.progress, fmt=settings.fmt)
