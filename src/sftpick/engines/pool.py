"""Score shards in several worker processes, each with its own copy of the scorer.

With several GPUs each worker takes one device, so a multi-GPU machine needs no hand-split
files. On CPU the threads are split between the workers; on a 2-core CPU two 1-thread
workers ran at 0.83x of one 2-thread process (benchmarks/README.md), so CPU runs default
to one. Workers take shards from one queue (so a slow shard does not hold the others back)
and send results to the parent, which alone writes the resume cache. A `WorkerPool` lives as
long as the run: its workers load their model once and score every chunk's shards.
"""
from __future__ import annotations

import inspect
import multiprocessing as mp
import os
import queue
from typing import Iterator

from ..examples import Example

_POLL_SECONDS = 5.0


def worker_devices(device: str, workers: int) -> list[str]:
    """`cuda` with N workers -> cuda:0 … cuda:N-1 (round robin over the GPUs); else the same device."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(workers)]
    return [device] * workers


class WorkerPool:
    """`workers` processes, each with its own copy of `scorer` set up once, kept until closed."""

    def __init__(self, scorer, workers: int):
        import torch

        context = mp.get_context("spawn")
        self.tasks, self.results = context.Queue(), context.Queue()
        self.calls = 0  # tells a call's results from those of an earlier call that was abandoned
        threads = max(1, torch.get_num_threads() // workers)
        params = constructor_params(scorer)
        devices = ([{"device": device} for device in worker_devices(params["device"], workers)]
                   if "device" in params else [{}] * workers)  # a scorer without a device option keeps none
        self.processes = [context.Process(target=_work, daemon=True, args=(
            type(scorer), {**params, **device}, threads, self.tasks, self.results)) for device in devices]
        for process in self.processes:
            process.start()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scored_shards(self, shards: list[list[Example]]) -> Iterator[tuple[int, dict]]:
        """(shard index, scores) as the workers finish them, in completion order."""
        self.calls += 1
        for index, shard in enumerate(shards):
            self.tasks.put((self.calls, index, shard))
        done = 0
        while done < len(shards):
            call, index, result = _next_result(self.results, self.processes)
            if call == self.calls:
                done += 1
                yield index, result

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
            process.join()


def constructor_params(scorer) -> dict:
    """The scorer's constructor arguments, read back from its attributes (they share names)."""
    names = [n for n in inspect.signature(type(scorer)).parameters if n not in ("self", "args", "kwargs")]
    return {name: getattr(scorer, name) for name in names}


def _next_result(results, processes) -> tuple[int, int, dict]:
    while True:
        try:
            call, index, result = results.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a scoring worker died (exit code {dead[0].exitcode})") from None
            continue
        if isinstance(result, BaseException):
            raise result
        return call, index, result


def _work(cls, params: dict, threads: int, tasks, results) -> None:
    import torch

    torch.set_num_threads(threads)
    parent = os.getppid()
    try:
        scorer = cls(**params)
        scorer.setup()
    except Exception as error:  # e.g. the model cannot load: the parent raises it, not "exit code 1"
        results.put((None, None, error))
        return
    while True:
        try:
            task = tasks.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if os.getppid() != parent:  # the parent was killed: stop instead of lingering
                return
            continue
        call, index, shard = task
        try:
            results.put((call, index, scorer.score(shard)))
        except Exception as error:  # reported to the parent, which raises it
            results.put((call, index, error))
            return
