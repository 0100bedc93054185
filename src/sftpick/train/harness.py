"""Benchmark accuracy through EleutherAI's lm-evaluation-harness, as LIMA and DEITA report it
beside loss and win rates: the base model and each arm's tuned model, in memory, run the
`tasks` through the harness's own model wrapper (HFLM); the harness renders the prompts,
scores the choices and computes the metrics; sftpick writes none of that by hand.

Optional (`pip install 'sftpick[harness]'`). The tasks need their data on this machine: a
harness task whose dataset is in the local Hugging Face cache, or a task YAML of yours that
reads local files (`task_dir`, the harness's include path). Results are cached per tuned model
and task settings, like the other measures, so a rerun runs nothing it has."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ..cache import config_hash
from ..errors import MissingDependency, OptionError, did_you_mean
from ..options import option
from ..writers import atomic_write


@dataclass(kw_only=True)
class HarnessSettings:
    """`sftpick eval --tasks`: lm-evaluation-harness tasks run by every tuned model."""

    tasks: list[str] = option([], "lm-evaluation-harness tasks each tuned model (and the base model) runs; their "
                                  "data must be local (pip install 'sftpick[harness]'); repeatable.",
                              flags=("--task",), repeat=True)
    task_dir: Path | None = option(None, "A folder of task YAMLs of yours (the harness's include path).")
    task_limit: int | None = option(None, "Examples per task (the harness's limit; default: all).", ge=1)
    task_batch_size: int = option(8, "Examples per batch in the harness.", ge=1)


def check_tasks(settings: HarnessSettings) -> None:
    """The harness installed and every task known to it, before any model loads."""
    if importlib.util.find_spec("lm_eval") is None:
        raise MissingDependency("--task needs lm-evaluation-harness: pip install 'sftpick[harness]'")
    if settings.task_dir is not None and not Path(settings.task_dir).is_dir():
        raise OptionError(f"task_dir={str(settings.task_dir)!r}: no such folder")
    known = set(_task_manager(settings.task_dir).all_tasks)
    for task in settings.tasks:
        if task not in known:
            raise OptionError(f"task {task!r} is not an lm-evaluation-harness task here{did_you_mean(task, known)} "
                              "(a task of yours: --task-dir FOLDER of its YAML)")


def _task_manager(task_dir: Path | None):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir) if task_dir else None)


@dataclass
class HarnessPlan:
    settings: HarnessSettings
    out: Path

    def _path(self, model_key: str) -> Path:
        config = {"tasks": sorted(self.settings.tasks), "limit": self.settings.task_limit,
                  "task_dir": str(self.settings.task_dir) if self.settings.task_dir else None}
        return self.out / "harness" / f"{model_key}-{config_hash(config)}.json"

    def has(self, model_key: str) -> bool:
        return self._path(model_key).exists()

    def load(self, model_key: str) -> dict:
        return json.loads(self._path(model_key).read_text())

    def run(self, model_key: str, model, tokenizer) -> dict:
        """{task: {metric: value}} of `model`, from the cache when done."""
        if not self.has(model_key):
            atomic_write(self._path(model_key), json.dumps(self._evaluate(model, tokenizer), indent=2))
        return self.load(model_key)

    def _evaluate(self, model, tokenizer) -> dict:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        wrapped = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.settings.task_batch_size,
                       device=str(next(model.parameters()).device))
        results = lm_eval.simple_evaluate(model=wrapped, tasks=list(self.settings.tasks),
                                          task_manager=_task_manager(self.settings.task_dir),
                                          limit=self.settings.task_limit, log_samples=False)["results"]
        return {task: {name.split(",")[0]: value for name, value in metrics.items()
                       if isinstance(value, (int, float)) and "stderr" not in name and name != "sample_len"}
                for task, metrics in results.items()}
