"""Progress of a scoring run: one rich bar per scorer on a terminal, plain lines in a log."""
from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack, contextmanager

import numpy as np

LOG_SECONDS = 10.0  # between progress lines when stderr is not a terminal


@contextmanager
def progress_bars(enabled: bool, names: list[str], total: int | None):
    """scorer name -> `advance(n)`: one bar per scorer on a terminal, plain lines in a log."""
    if not enabled or total == 0:
        yield {name: lambda n: None for name in names}
    elif sys.stderr.isatty():
        with _RecordsProgress(names, total) as advance:
            yield advance
    else:
        with ExitStack() as stack:
            yield {name: stack.enter_context(_ProgressLog(name, total)) for name in names}


class _RecordsProgress:
    """Rich progress bars with records/s and an ETA (none while the total is unknown)."""

    def __init__(self, names: list[str], total: int | None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(
            TextColumn("scoring [bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} records/s"), TimeElapsedColumn(), TimeRemainingColumn())
        self.tasks = {name: self.progress.add_task(name, total=total, rate="-") for name in names}
        self.counts = dict.fromkeys(names, 0)

    def __enter__(self) -> dict:
        self.started = time.perf_counter()
        self.progress.start()
        return {name: (lambda n, name=name: self.advance(name, n)) for name in self.tasks}

    def advance(self, name: str, n: int) -> None:
        self.counts[name] += n
        rate = self.counts[name] / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.tasks[name], advance=n, rate=f"{rate:.1f}")

    def __exit__(self, *exc) -> None:
        for name, task in self.tasks.items():
            self.progress.update(task, total=self.counts[name])
        self.progress.stop()


class _ProgressLog:
    """Progress for a log file (stderr is not a terminal): a plain line every `LOG_SECONDS`
    (SFTPICK_LOG_SECONDS overrides) with records done, records/s and the ETA, and one at the
    end. `total` is what the input was expected to hold (None: unknown); the last line
    counts what was scored."""

    def __init__(self, name: str, total: int | None):
        self.name, self.total, self.count = name, total, 0
        self.every = float(os.environ.get("SFTPICK_LOG_SECONDS", LOG_SECONDS))

    def __enter__(self):
        self.started = self.logged = time.perf_counter()
        return self.advance

    def advance(self, n: int) -> None:
        self.count += n
        if n and time.perf_counter() - self.logged >= self.every:
            self._log()

    def _log(self) -> None:
        self.logged = time.perf_counter()
        rate = self.count / max(self.logged - self.started, 1e-9)
        if not self.total:
            print(f"scoring {self.name}: {self.count} records, {rate:.1f} records/s", file=sys.stderr, flush=True)
            return
        eta = max(self.total - self.count, 0) / rate if rate > 0 else float("inf")
        print(f"scoring {self.name}: {self.count}/{self.total} records ({self.count / self.total:.1%}), "
              f"{rate:.1f} records/s, ETA {_duration(eta)}", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.total = self.count
            self._log()


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
