"""Supervised fine-tuning with transformers' `Trainer`: full fine-tuning by default, LoRA
(Hu et al., arXiv 2106.09685) through `peft` when `lora_rank` is set. The loss is on the
response tokens only (`data.encode` masks the prompt). fp32 on CPU; fp32 weights with
bf16 autocast on CUDA. Deterministic for a seed on one machine and thread count: the seed
fixes LoRA's initialisation, the shuffling and dropout.

Defaults follow the Alpaca recipe that Cherry LLM and Superfiltering fine-tune with
(3 epochs, lr 2e-5, cosine schedule, 3% warmup, no weight decay), at a batch size that
suits small subsets (16; Alpaca used 128).
"""
from __future__ import annotations

import math
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import TrainerCallback

from .config import SCHEDULERS, TrainConfig, check_config, train_config  # noqa: F401  (importable from here)
from .data import Encoded, collate


@dataclass
class FineTuned:
    model: object  # the tuned transformers model, LoRA merged in (unless merge_lora=False), in eval mode
    losses: list[float]  # training loss per optimizer step
    steps: int
    tokens_seen: int  # non-padding tokens run forward (prompt + response), all epochs
    seconds: float
    peak_memory_mib: float  # CUDA: max allocated during training; CPU: the process's peak RSS


def fine_tune(model, tokenizer, encoded: list[Encoded], config: TrainConfig, *, progress: bool = True,
              label: str = "", callbacks: Sequence[TrainerCallback] = (), merge_lora: bool = True) -> FineTuned:
    """Train `model` in place on `encoded` (no input validation). `callbacks`: more transformers
    TrainerCallbacks (LESS's warmup saves its checkpoints with one); `merge_lora=False` returns the
    peft model with its adapters unmerged."""
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    set_seed(config.seed)
    if config.lora_rank:
        model = _with_lora(model, config.lora_rank)
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    with tempfile.TemporaryDirectory(prefix="sftpick-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size, learning_rate=config.lr,
            lr_scheduler_type=config.scheduler, warmup_steps=warmup_steps(config, len(encoded)),
            weight_decay=config.weight_decay,
            seed=config.seed, data_seed=config.seed, logging_steps=1, save_strategy="no", report_to="none",
            disable_tqdm=True, use_cpu=not cuda, bf16=cuda, dataloader_pin_memory=cuda,
            remove_unused_columns=False, include_num_input_tokens_seen="non_padding")
        rows = [{"input_ids": e.ids, "labels": e.labels()} for e in encoded]
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=lambda batch: collate(batch, pad_id))
        trainer.remove_callback(PrinterCallback)  # prints every log as a dict; the bar shows the loss
        if progress:
            trainer.add_callback(_Progress(label))
        for callback in callbacks:
            trainer.add_callback(callback)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    state = trainer.state
    model = trainer.model
    if config.lora_rank and merge_lora:
        model = model.merge_and_unload()
    model.eval()
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return FineTuned(model, losses, state.global_step, int(state.num_input_tokens_seen), seconds,
                     peak_memory_mib(cuda))


def warmup_steps(config: TrainConfig, n_records: int) -> int:
    """`warmup` × the optimizer steps, rounded down: transformers' schedule runs the first
    warmup step at learning rate 0, so rounding up would waste the only step of a tiny run."""
    total = config.max_steps or math.ceil(config.epochs * math.ceil(n_records / config.batch_size))
    return int(config.warmup * total)


def peak_memory_mib(cuda: bool) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _with_lora(model, rank: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("--lora-rank needs peft: pip install 'sftpick[train]' (or pip install peft)") from None
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


class _Progress(TrainerCallback):
    """A rich progress bar over optimizer steps, with the loss and tokens/s."""

    def __init__(self, label: str):
        self.label = label

    def on_train_begin(self, args, state, control, **kwargs):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(f"training [bold]{self.label}[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, info="")
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            rate = state.num_input_tokens_seen / max(time.perf_counter() - self.started, 1e-9)
            self.progress.update(self.task, completed=state.global_step,
                                 info=f"loss {logs['loss']:.4f}  {rate:,.0f} tok/s")

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.update(self.task, completed=state.global_step)
        self.progress.stop()
