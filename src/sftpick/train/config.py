"""Training settings as plain data (TrainConfig): saved with every result, part of every arm's
cache key, and light to import (the trainer itself, train/finetune.py, loads torch and
transformers)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import OptionError, did_you_mean
from ..options import check_options, option, read_config
from ..templates import TEMPLATES

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Plain data: saved with every result, part of every arm's cache key."""

    epochs: float = option(3.0, "Epochs.", gt=0)
    lr: float = option(2e-5, "Peak learning rate (~2e-4 suits LoRA).", gt=0)
    batch_size: int = option(16, "Records per optimizer step.", ge=1)
    max_length: int = option(1024, "Longest training/eval sequence in tokens.", ge=2)
    seed: int = option(0, "Training seed.")
    lora_rank: int | None = option(None, "Train LoRA adapters of this rank (peft) instead of all weights "
                                         "(None: full fine-tuning).", ge=1)
    template: str = option("alpaca", "Prompt template: none | alpaca | chat.", choices=TEMPLATES)
    warmup: float = option(0.03, "Warm-up, a fraction of the steps.", ge=0, lt=1, what="a fraction of the steps")
    scheduler: str = option("cosine", "Learning-rate schedule.", choices=SCHEDULERS)
    weight_decay: float = option(0.0, "Weight decay.", ge=0)
    max_steps: int | None = option(None, "Stop each fine-tune after this many optimizer steps (quick checks).", ge=1)

    def to_dict(self) -> dict:
        return asdict(self)


def train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults, then the config file at `path` (TOML, or a manifest whose config holds these
    settings), then the `overrides` that are not None; checked."""
    values = {}
    if path is not None:
        names = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in read_config(path).items() if k in names}
    values = {**values, **{k: v for k, v in overrides.items() if v is not None}}
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OptionError(f"unknown training setting {', '.join(unknown)}{did_you_mean(unknown[0], known)}; "
                          f"valid: {', '.join(sorted(known))}")
    config = TrainConfig(**values)
    check_config(config)
    return config


def check_config(config: TrainConfig) -> None:
    """OptionError naming the first bad value."""
    check_options(config)
