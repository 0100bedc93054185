"""LESS's gradient features of a set of records, made once and cached: the glue the strategies
that use them share (selectors/less.py, selectors/tagcos.py) around the warmup
(`features.warmup`) and the per-checkpoint features (`features.gradients`).

In a strategy's work folder:
- `warmup-<fingerprint>/`: the LoRA warmup on a seeded fraction of the records it is given,
  one checkpoint per epoch, or after given steps (a finished warmup is found there and never
  trained again; another set of records or settings gets another folder);
- `features/gradients-<config hash>/`: one unit vector per record and checkpoint, through
  `embeddings.cached_vectors`, keyed by the record's content and `gradients.feature_config`
  (model, revision, LoRA rank, checkpoint, projection, preconditioning, template, max_length)
  and stored float16 (read back as float32). Records are computed `CHUNK` at a time, each
  chunk saved as it is done, so a killed run loses at most one chunk of one checkpoint.

A record whose prompt fills `max_length` has no response token to take a gradient of: it gets
no feature (`Gradients.encode` gives None and the reason), never a default one.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..embeddings import cached_vectors
from ..errors import DataError
from ..examples import Example
from ..models import LoadedLM, load_causal_lm
from ..train.data import Encoded, encode
from .gradients import feature_config, gradient_features
from .settings import GradientSettings
from .warmup import Checkpoint, Warmup, warmup, warmup_fingerprint

STORE_NAME = "gradients"
STORED_DTYPE = "float16"
CHUNK = 4096  # records per cached chunk: what a killed run may redo, per checkpoint


class Gradients:
    """One model, one warmup in `workdir`, the cached features of any records at its
    checkpoints. `seconds` (stage -> seconds) and `computed` (features made, not read from the
    cache) say what a call cost."""

    def __init__(self, settings: GradientSettings, workdir: str | Path):
        self.settings, self.workdir = settings, Path(workdir)
        self.seconds: dict[str, float] = {}
        self.computed = 0
        self._lm: LoadedLM | None = None

    @property
    def lm(self) -> LoadedLM:
        """The model, loaded once, in float32 (the warmup's master weights, LESS's too)."""
        if self._lm is None:
            with self.timed("load"):
                self._lm = load_causal_lm(self.settings.model, device=self.settings.device, dtype="float32")
        return self._lm

    def encode(self, examples: list[Example]) -> tuple[list[Encoded | None], list[str | None]]:
        """One training sequence (or None) and one reason (or None) per record, as the warmup and
        the gradients read them."""
        return encode(examples, self.lm.tokenizer, self.settings.template, self.settings.max_length)

    def warmup(self, examples: list[Example]) -> tuple[Warmup, float]:
        """The warmup on the settings' fraction of `examples` (at least one record), trained now
        or found done; and the fraction used."""
        fraction = at_least_one(len(examples), self.settings.fraction)
        config = self.settings.train_config()
        steps = tuple(self.settings.checkpoint_steps)
        name = warmup_fingerprint(self.lm.name, self.lm.revision, examples, config=config, fraction=fraction,
                                  subset_seed=self.settings.subset_seed, save_steps=steps)
        with self.timed("warmup"):
            try:
                done = warmup(self.lm, examples, self.workdir / f"warmup-{name}", config=config, fraction=fraction,
                              subset_seed=self.settings.subset_seed, save_steps=steps)
            except ValueError as error:  # no record of the subset fits max_length, steps past the run's end
                raise DataError(f"the LESS warmup cannot train: {error}") from None
        return done, fraction

    def features(self, examples: list[Example], encoded: list[Encoded], checkpoint: Checkpoint,
                 preconditioning: str, stage: str = "features") -> np.ndarray:
        """Unit feature vectors [len(examples), dim] float32 of records at `checkpoint` (each
        record's `encoded` sequence given, none None): read from the cache where done, the rest
        computed and saved a chunk at a time. `preconditioning`: adam | adam-code | sgd."""
        config = self.feature_config(checkpoint, preconditioning)
        sequences = {e.content_hash: s for e, s in zip(examples, encoded)}

        def compute(fresh: list[Example]) -> np.ndarray:
            self.computed += len(fresh)
            return gradient_features(self.lm, checkpoint, [sequences[e.content_hash] for e in fresh],
                                     preconditioning=preconditioning, dim=self.settings.dim,
                                     token_budget=self.settings.token_budget)

        with self.timed(stage):
            parts = [cached_vectors(examples[start:start + CHUNK], config, self.workdir / "features",
                                    compute=compute, store_name=STORE_NAME)
                     for start in range(0, len(examples), CHUNK)]
        return np.concatenate(parts) if parts else np.zeros((0, self.settings.dim), dtype=np.float32)

    def feature_config(self, checkpoint: Checkpoint, preconditioning: str) -> dict:
        """The cache key of the features at `checkpoint` (plain data, nothing loaded)."""
        s = self.settings
        return {**feature_config(s.model, checkpoint=checkpoint.id, lora_rank=s.lora_rank,
                                 preconditioning=preconditioning, dim=s.dim, template=s.template,
                                 max_length=s.max_length), "dtype": STORED_DTYPE}

    def timed(self, stage: str):
        """A context that adds its seconds to `seconds[stage]`."""
        return _Timer(self.seconds, stage)


def at_least_one(n: int, fraction: float) -> float:
    """`fraction`, or the smallest fraction of `n` records that holds one when it holds none
    (LESS's subset is int(n · fraction) records)."""
    if n < 1 or int(n * fraction) >= 1:
        return fraction
    smallest = 1 / n
    return smallest if int(n * smallest) >= 1 else math.nextafter(smallest, 1.0)


class _Timer:
    def __init__(self, seconds: dict[str, float], stage: str):
        self.seconds, self.stage = seconds, stage

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + time.perf_counter() - self.started
