"""LESS step 1: a short LoRA warmup on a random fraction of the pool, keeping one checkpoint
per epoch for the gradient features (Xia et al., "LESS: Selecting Influential Data for
Targeted Instruction Tuning", arXiv 2402.04333; princeton-nlp/LESS @ 8abf962,
`less/scripts/train/warmup_lora_train.sh`, `less/train/train.py`).

As LESS: the subset is `np.random.RandomState(seed).permutation(N)[:int(N * fraction)]`
(the whole pool, unshuffled, when that is all of it) with seed 42, the seed LESS's script
really uses (its `--data_seed` never reaches `sample_data_seed`); 4 epochs, lr 2e-5, linear
schedule with 3% warmup, no weight decay, AdamW (betas 0.9/0.999, eps 1e-8), LoRA rank 128
(the paper's; `settings.CPU_LORA_RANK` = 8 keeps a CPU run small), batch 32 (the script's effective
batch on one GPU), trainer seed 0.

Not as LESS: the LoRA is `train.finetune`'s (alpha 2r, dropout 0.05, every linear layer)
where LESS uses alpha 4r, dropout 0.1 on the q, k, v, o projections. An epoch's mean
learning rate is the mean of the rates its optimizer steps applied (LESS's README copies
logged rates, from a schedule of 4 GPUs' steps).

`save_steps` gives checkpoints after given optimizer steps instead, `step-<k>/`, and stops
training after the last (TAGCOS's code uses steps 10, 20 and 30 of a 4-epoch warmup).

Each checkpoint, `epoch-<k>/` (or `step-<k>/`): the LoRA weights (peft's `adapter_model.safetensors`), the
Adam state `optimizer.safetensors` (`exp_avg.<name>`, `exp_avg_sq.<name>`, `step.<name>`),
keyed by the parameter's name in the peft model, found from the optimizer's parameters by
identity, never by position (LESS reads states by name from an FSDP checkpoint and fails on
the plain, index-keyed `optimizer.pt`: LESS#4, #10), and `checkpoint.json` (epoch, step,
mean lr, Adam's betas and eps). Each is written to a temporary folder, then renamed;
`warmup.json`, written last, marks the run complete, so a second call trains nothing.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from ..cache import config_hash
from ..examples import Example
from ..models import LoadedLM
from ..train.config import TrainConfig, check_config
from ..train.data import encode
from ..train.finetune import fine_tune
from ..writers import atomic_write
from .settings import LESS_WARMUP, SUBSET_SEED

MANIFEST = "warmup.json"
OPTIMIZER_FILE = "optimizer.safetensors"
ADAM_KINDS = ("exp_avg", "exp_avg_sq", "step")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    id: str  # "<warmup fingerprint>/epoch-<k>": what a gradient feature cache is keyed by
    epoch: int
    step: int  # optimizer steps taken when it was saved
    lr_mean: float  # mean learning rate of the epoch's optimizer steps


@dataclass(frozen=True)
class Warmup:
    folder: Path
    checkpoints: tuple[Checkpoint, ...]
    rows: tuple[int, ...]  # pool positions trained on, in sampled order
    trained: bool  # False: found complete in `folder`, nothing was trained

    @property
    def lr_weights(self) -> np.ndarray:
        """Each checkpoint's mean learning rate over their sum: LESS's checkpoint weights."""
        rates = np.array([c.lr_mean for c in self.checkpoints])
        return rates / rates.sum()


@dataclass(frozen=True)
class AdamState:
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    step: dict[str, float]
    betas: tuple[float, float]
    eps: float


def warmup_subset(n: int, fraction: float = 0.05, seed: int = SUBSET_SEED) -> np.ndarray:
    """LESS's subset of a pool of `n` (`get_training_dataset.py`), in sampled order."""
    size = int(n * fraction)
    if not 0 < fraction <= 1 or size < 1:
        raise ValueError(f"fraction={fraction} of {n} records selects none; it should be in (0, 1] "
                         f"and at least 1/{n}")
    if size == n:
        return np.arange(n)
    return np.random.RandomState(seed).permutation(n)[:size]


def warmup(lm: LoadedLM, examples: list[Example], folder: str | Path, *, config: TrainConfig = LESS_WARMUP,
           fraction: float = 0.05, subset_seed: int = SUBSET_SEED, save_steps: tuple[int, ...] = (),
           progress: bool = False) -> Warmup:
    """Train LoRA on a copy of `lm.model` over LESS's random `fraction` of `examples`, one
    checkpoint per epoch in `folder`; returns the checkpoints found there when a run with the
    same settings completed before. Records whose prompt fills `max_length` are left out.

    `save_steps` (ascending): checkpoints after these optimizer steps instead, `step-<k>/`,
    each weighted by the mean learning rate since the one before, and training stops after the
    last, the schedule still that of the whole run (TAGCOS's code: steps 10, 20 and 30 of a
    4-epoch warmup, stopped by hand)."""
    check_config(config)
    if not config.lora_rank:
        raise ValueError("config.lora_rank is None; the LESS warmup trains LoRA (rank 128, or 8 on a CPU)")
    if list(save_steps) != sorted(set(save_steps)) or any(step < 1 for step in save_steps):
        raise ValueError(f"save_steps={list(save_steps)} should be ascending optimizer steps, each >= 1")
    folder = Path(folder)
    rows, run = _describe(lm.name, lm.revision, examples, config, fraction, subset_seed, save_steps)
    chosen = [examples[int(row)] for row in rows]
    fingerprint = config_hash(run)
    done = _completed(folder, fingerprint)
    if done is not None:
        return done
    encoded = [e for e in encode(chosen, lm.tokenizer, config.template, config.max_length)[0] if e is not None]
    if not encoded:
        raise ValueError(f"no record of the warmup subset fits max_length={config.max_length}")
    total = _steps(config, len(encoded))
    if save_steps and save_steps[-1] > total:
        raise ValueError(f"save_steps={list(save_steps)} reach past the warmup's {total} optimizer steps "
                         f"({len(encoded)} records, batch {config.batch_size}, {config.epochs:g} epochs)")
    saver = _SaveAtSteps(folder, fingerprint, save_steps) if save_steps else _SaveEachEpoch(folder, fingerprint)
    fine_tune(copy.deepcopy(lm.model), lm.tokenizer, encoded, config, progress=progress, label="LESS warmup",
              callbacks=[saver], merge_lora=False)
    expected = len(save_steps) if save_steps else _epochs(config, len(encoded))
    assert len(saver.saved) == expected, f"{len(saver.saved)} checkpoints saved, {expected} expected"
    manifest = {"fingerprint": fingerprint, **run, "rows": rows.tolist(), "trained_records": len(encoded),
                "checkpoints": [{"name": c.path.name, "epoch": c.epoch, "step": c.step, "lr_mean": c.lr_mean}
                                for c in saver.saved]}
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2))
    return Warmup(folder, tuple(saver.saved), tuple(rows.tolist()), trained=True)


def warmup_fingerprint(model: str, revision: str, examples: list[Example], *, config: TrainConfig = LESS_WARMUP,
                       fraction: float = 0.05, subset_seed: int = SUBSET_SEED, save_steps: tuple[int, ...] = ()) -> str:
    """What `warmup` would train, as a short hash, known without loading the model (`revision`:
    `models.model_revision(model)`): a caller may name the warmup's folder by it."""
    return config_hash(_describe(model, revision, examples, config, fraction, subset_seed, save_steps)[1])


def _describe(model: str, revision: str, examples: list[Example], config: TrainConfig, fraction: float,
              subset_seed: int, save_steps: tuple[int, ...] = ()) -> tuple[np.ndarray, dict]:
    """The subset's pool positions and the settings that make the run (its fingerprint's input;
    `save_steps` named only when set, so the fingerprints of per-epoch runs stay as they were)."""
    rows = warmup_subset(len(examples), fraction, subset_seed)
    return rows, {"model": model, "revision": revision, "config": config.to_dict(), "fraction": fraction,
                  "subset_seed": subset_seed, "records": [examples[int(row)].content_hash for row in rows],
                  **({"save_steps": list(save_steps)} if save_steps else {})}


def load_warmup(folder: str | Path) -> Warmup:
    """The completed warmup in `folder`, read from its manifest (loads no tensor)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{folder} holds no completed LESS warmup (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    checkpoints = tuple(Checkpoint(folder / c["name"], f"{manifest['fingerprint']}/{c['name']}", c["epoch"],
                                   c["step"], c["lr_mean"]) for c in manifest["checkpoints"])
    return Warmup(folder, checkpoints, tuple(manifest["rows"]), trained=False)


def load_adam_state(checkpoint: Checkpoint) -> AdamState:
    """The checkpoint's Adam state, by parameter name."""
    from safetensors.torch import load_file

    tensors = load_file(checkpoint.path / OPTIMIZER_FILE)
    state: dict[str, dict] = {kind: {} for kind in ADAM_KINDS}
    for key, tensor in tensors.items():
        kind, _, name = key.partition(".")
        state[kind][name] = tensor
    info = json.loads((checkpoint.path / "checkpoint.json").read_text())
    steps = {name: float(t.item()) for name, t in state["step"].items()}
    return AdamState(state["exp_avg"], state["exp_avg_sq"], steps, tuple(info["betas"]), info["eps"])


def _completed(folder: Path, fingerprint: str) -> Warmup | None:
    if not (folder / MANIFEST).exists():
        return None
    found = json.loads((folder / MANIFEST).read_text())["fingerprint"]
    if found != fingerprint:
        raise ValueError(f"{folder} holds a LESS warmup with other settings (fingerprint {found}, "
                         f"these make {fingerprint}); give another folder")
    return load_warmup(folder)


def _epochs(config: TrainConfig, n_records: int) -> int:
    """The epochs transformers' Trainer runs, the last one possibly cut short by max_steps."""
    return math.ceil(_steps(config, n_records) / math.ceil(n_records / config.batch_size))


def _steps(config: TrainConfig, n_records: int) -> int:
    """The optimizer steps of the whole run."""
    return config.max_steps or math.ceil(config.epochs * math.ceil(n_records / config.batch_size))


class _SaveEachEpoch(TrainerCallback):
    """Saves a checkpoint at each epoch's end; notes the learning rate each step applied."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint
        self.rates: list[float] = []
        self.saved: list[Checkpoint] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append(_unwrapped(optimizer).param_groups[0]["lr"])  # the scheduler steps after this

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        epoch = len(self.saved) + 1
        info = {"epoch": epoch, "step": state.global_step, "lr_mean": float(np.mean(self.rates)),
                **_adam_hyperparameters(_unwrapped(optimizer))}
        path = self.folder / f"epoch-{epoch}"
        _save_checkpoint(path, model, _unwrapped(optimizer), info)
        self.saved.append(Checkpoint(path, f"{self.fingerprint}/{path.name}", epoch, info["step"], info["lr_mean"]))
        self.rates = []


class _SaveAtSteps(_SaveEachEpoch):
    """Saves a checkpoint after each of `steps` (ascending) and stops training after the last."""

    def __init__(self, folder: Path, fingerprint: str, steps: tuple[int, ...]):
        super().__init__(folder, fingerprint)
        self.steps = steps

    def on_epoch_end(self, args, state, control, **kwargs):
        pass

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step not in self.steps:
            return
        epoch = math.ceil(state.epoch - 1e-9)
        info = {"epoch": epoch, "step": state.global_step, "lr_mean": float(np.mean(self.rates)),
                **_adam_hyperparameters(_unwrapped(optimizer))}
        path = self.folder / f"step-{state.global_step}"
        _save_checkpoint(path, model, _unwrapped(optimizer), info)
        self.saved.append(Checkpoint(path, f"{self.fingerprint}/{path.name}", epoch, info["step"], info["lr_mean"]))
        self.rates = []
        if state.global_step == self.steps[-1]:
            control.should_training_stop = True


def _unwrapped(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps torch's


def _adam_hyperparameters(optimizer) -> dict:
    settings = {(tuple(group["betas"]), group["eps"]) for group in optimizer.param_groups}
    if len(settings) != 1:
        raise ValueError(f"the optimizer's parameter groups differ in betas/eps: {sorted(settings)}")
    betas, eps = settings.pop()
    return {"betas": list(betas), "eps": eps}


def _save_checkpoint(path: Path, model, optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_file(adam_tensors(model, optimizer), tmp / OPTIMIZER_FILE)
    (tmp / "checkpoint.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(path, ignore_errors=True)  # a checkpoint of an earlier, unfinished run
    tmp.rename(path)


def adam_tensors(model, optimizer) -> dict[str, torch.Tensor]:
    """`<kind>.<parameter name>` -> tensor for every parameter the optimizer holds state for;
    parameters are named by identity with `model.named_parameters()`."""
    names = {id(p): name for name, p in model.named_parameters()}
    tensors = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if not state:
                continue  # no step has touched it
            name = names[id(parameter)]
            for kind in ADAM_KINDS:
                value = torch.as_tensor(state[kind]).detach()
                tensors[f"{kind}.{name}"] = value.to("cpu", torch.float32).contiguous()
    return tensors
