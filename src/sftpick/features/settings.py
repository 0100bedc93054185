"""LESS's gradient features as plain data: the settings of the warmup and of the features
(`GradientSettings`) and LESS's defaults, light to import (the code that trains and
differentiates, `features.warmup`, `features.gradients`, `features.store`, loads torch)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..models import DEFAULT_LM
from ..train.config import TrainConfig

DEFAULT_DIM = 8192  # LESS's projection dimension
SUBSET_SEED = 42  # the warmup subset's seed LESS's script really uses
CPU_LORA_RANK = 8
LESS_WARMUP = TrainConfig(epochs=4, lr=2e-5, batch_size=32, max_length=2048, seed=0, lora_rank=128,
                          warmup=0.03, scheduler="linear", weight_decay=0.0)


@dataclass(frozen=True)
class GradientSettings:
    """Everything that makes the warmup and the features (plain data)."""

    model: str = DEFAULT_LM
    device: str = "auto"
    lora_rank: int = 128
    epochs: int = 4
    lr: float = 2e-5
    batch_size: int = 32
    fraction: float = 0.05
    subset_seed: int = SUBSET_SEED
    max_length: int = 2048
    template: str = "alpaca"
    dim: int = DEFAULT_DIM
    token_budget: int | None = None  # padded tokens per gradient micro-batch (None: gradients' default)
    checkpoint_steps: tuple[int, ...] = ()  # checkpoints after these optimizer steps (default: one per epoch)

    def train_config(self) -> TrainConfig:
        """LESS's warmup recipe (linear schedule, 3% warmup, no weight decay, seed 0) with these settings."""
        return replace(LESS_WARMUP, epochs=float(self.epochs), lr=self.lr, batch_size=self.batch_size,
                       max_length=self.max_length, lora_rank=self.lora_rank, template=self.template)
