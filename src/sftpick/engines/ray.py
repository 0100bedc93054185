"""The `ray` engine: shards scored by a Ray Data actor pool (`Dataset.map_batches` with a
callable class), so a cluster of machines and GPUs scores one input without hand-split files.

Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications" (OSDI 2018);
Ray Data's streaming executor runs the map.

- Each actor rebuilds the same scorer from its constructor arguments
  (`pool.constructor_params`) and calls `setup()` once; a shard is one row, scored by
  `scorer.score(shard)`, the very call the local engine makes.
- `workers` actors, each `gpus_per_worker` GPUs and a CPU share sized from the cluster:
  Ray Data's own tasks (reading the shards in) need CPU too, and on a 2-CPU machine two
  1-CPU actors left them none and the run hung for good; at 0.5 CPU each it runs.
- A request the cluster can never meet (more GPUs than it has) fails before any work; a
  run where no shard finishes for `SFTPICK_RAY_STALL_SECONDS` (default 900: time for the
  actors to start and load their models) fails with a message saying so, never hangs.
- A killed actor is restarted by Ray and its shard retried (Ray Data's defaults for actor
  pools); the driver takes each shard index once and alone writes the resume cache, keyed
  by content hash, so nothing is lost or saved twice.
- Actors run the scorers that run a model (IFD, kNN's embedding step, reward, DEITA), as
  the local engine's worker processes do. Scorers without one (`len`, `mtld`) stay in the
  driver, which reads and hashes every record anyway: shipping a record to an actor costs
  more than scoring it there, and each chunk's map starts its own actor pool (at 100k
  records, `len,mtld` took 180.2 s on actors against 16.1 s in the driver; see docs/scale.md).
- Ray Data reads a JSONL or Parquet input: one task per part (`Source.parts`: about 8 MiB
  of whole lines, or a row group) parses its records and hashes their content where it
  runs, and the parts come back in file order. The driver finds the parts' boundaries (one
  pass over the bytes, which also gives the file's SHA-256), numbers the rows, drops repeated
  content against its digest index, keeps the resume cache and the rejects. A JSON array is
  read in the driver: its records can only be found by walking it from the start. On a
  cluster of several machines the input must be on storage every node sees.
- Shards, read parts and results cross Ray as pickled bytes, made a moment before by this
  run's own processes and unpickled only by them, inside one Ray session (whose own object
  transport is cloudpickle: anyone who can reach the cluster can already run code on it).
  No file is ever unpickled: the inputs are JSON/Parquet and the cache, vectors and outputs
  Parquet/JSON. Explicit bytes let a scorer's exception come back with its type, or as its
  text when it does not pickle, instead of Ray's wrapper.
- kNN's global search and derived scorers stay in the driver, and so does the judge
  (`keeps_journal`): its work is HTTP requests to a server that is the bottleneck, already
  concurrent (`--concurrency`) in one process; actors would multiply that concurrency behind
  the user's back and could save a rating only with its whole shard, where the driver
  journals each rating the moment it arrives.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import queue
import threading
import time
from typing import Iterator

import numpy as np

from ..errors import EngineError, MissingDependency, OptionError
from ..examples import Example
from ..io import Chunk, Part, Source
from .base import redact_address, trait
from .pool import constructor_params

INSTALL = "pip install 'sftpick[ray]'"
STALL_SECONDS = 900.0
_MAX_BLOCKS = 10_000  # one shard per block up to this many (more blocks cost the scheduler more than they balance)


def check_ray(*, gpus_per_worker: float, device: str | None) -> None:
    """Ray is installed and the settings make sense (no cluster is contacted)."""
    if importlib.util.find_spec("ray") is None:
        raise MissingDependency(f"engine 'ray' needs Ray, which is not installed: {INSTALL}")
    if not isinstance(gpus_per_worker, (int, float)) or isinstance(gpus_per_worker, bool) or not (
            0 <= gpus_per_worker < float("inf")):
        raise OptionError(f"gpus_per_worker={gpus_per_worker!r} should be a number >= 0 (0.5 puts two workers on a GPU)")
    if device is not None and device.startswith("cuda") and not gpus_per_worker:
        raise OptionError(f"device={device!r} on engine 'ray' needs GPUs for its workers: add --gpus-per-worker 1")
    if device is not None and device.startswith("cuda:"):
        raise OptionError(f"device={device!r}: on engine 'ray' each worker sees only the GPU Ray gives it, "
                          "so name no index: --device cuda (or auto)")


def actor_cpus(cluster_cpus: float, workers: int) -> float:
    """CPUs per actor: one each when the cluster has room for them and one more for Ray
    Data's own tasks; else an even share of what is left after that one."""
    spare = min(1.0, cluster_cpus / 2)
    return max(0.01, min(1.0, (cluster_cpus - spare) / workers))


def stall_seconds() -> float:
    return float(os.environ.get("SFTPICK_RAY_STALL_SECONDS", STALL_SECONDS))


class RayEngine:
    name = "ray"

    def __init__(self, workers: int = 1, *, ray_address: str | None = None, gpus_per_worker: float = 0.0):
        self.workers = workers
        self.ray_address = ray_address
        self.gpus_per_worker = gpus_per_worker

    def __enter__(self) -> "RayEngine":
        import ray

        self.started_ = not ray.is_initialized()
        if self.started_:  # joins `ray_address` (or RAY_ADDRESS, as under `ray job submit`), else starts one here
            ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        try:
            self._size(ray.cluster_resources())
        except BaseException:
            self.__exit__()
            raise
        _quiet_ray_data()
        return self

    def _size(self, resources: dict) -> None:
        """Actor CPU from the cluster; a GPU request it cannot meet is refused now, not after a hang."""
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if cpus <= 0:
            raise EngineError("the Ray cluster has no CPU to run on")
        needed = self.workers * self.gpus_per_worker
        if needed > gpus:
            raise EngineError(f"--workers {self.workers} with --gpus-per-worker {self.gpus_per_worker:g} needs "
                               f"{needed:g} GPU(s); the Ray cluster has {gpus:g}: lower one of them")
        self.cpus_per_worker_ = actor_cpus(cpus, self.workers)
        # Half of what the actors leave, so the scoring map's own tasks still find CPU beside the reads.
        self.cpus_per_read_ = max(0.1, min(1.0, (cpus - self.workers * self.cpus_per_worker_) / 2))
        self.cluster_ = {"cpus": cpus, "gpus": gpus}

    def __exit__(self, *exc) -> None:
        import ray

        if getattr(self, "started_", False) and ray.is_initialized():
            ray.shutdown()

    def chunks(self, source: Source, size: int) -> Iterator[Chunk]:
        """The input as chunks of `size` records in file order, its parts parsed by Ray Data
        tasks (a JSON array: read here)."""
        import ray.data

        parts = source.parts()
        if parts is None:
            yield from source.chunks(size)
            return
        items = [{"index": i, "start": p.start, "end": p.end, "first_line": p.first_line} for i, p in enumerate(parts)]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), _MAX_BLOCKS)).map_batches(
            _read_parts, batch_size=1, num_cpus=self.cpus_per_read_, fn_kwargs={"source": source})
        dataset.context.execution_options.preserve_order = True  # this dataset's own copy of the context
        read = (records for _, records in _within(stall_seconds(), dataset.iter_rows(), self._stalled))
        yield from source.regroup(read, size)

    def distributes(self, scorer, n_shards: int) -> bool:
        return n_shards > 0 and trait(scorer, "runs_a_model") and not trait(scorer, "keeps_journal")

    def scored_shards(self, scorer, shards: list[list[Example]]) -> Iterator[tuple[int, dict]]:
        """(shard index, scores) as the actors finish them; each index once."""
        import ray.data

        items = [{"index": i, "shard": pickle.dumps(shard)} for i, shard in enumerate(shards)]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), _MAX_BLOCKS))
        scored = dataset.map_batches(
            _ShardScorer, batch_size=1, compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker_,
            num_gpus=self.gpus_per_worker or None,
            fn_constructor_kwargs={"cls": type(scorer), "params": constructor_params(scorer),
                                   "threads": max(1, int(self.cpus_per_worker_))})
        seen: set[int] = set()
        # Read to the end of the stream, not only to the last new shard: a reader thread still
        # inside Ray Data when the engine shuts Ray down makes Ray end the process (exit code 1).
        for index, result in _within(stall_seconds(), scored.iter_rows(), self._stalled):
            if index not in seen:  # a retried shard that had already come back is taken once
                seen.add(index)
                yield index, result

    def _stalled(self, seconds: float) -> str:
        return (f"the ray engine made no progress for {seconds:g} s (no shard or part of the input finished): "
                f"the cluster ({self.cluster_['cpus']:g} CPUs, {self.cluster_['gpus']:g} GPUs) may be busy or "
                f"unable to place {self.workers} worker(s) of {self.cpus_per_worker_:g} CPU and "
                f"{self.gpus_per_worker:g} GPU; check `ray status`, lower --workers, or raise "
                "SFTPICK_RAY_STALL_SECONDS if the models take longer to load")

    def settings(self) -> dict:
        return {"engine": self.name, "workers": self.workers, "ray_address": redact_address(self.ray_address),
                "gpus_per_worker": self.gpus_per_worker, "cpus_per_worker": getattr(self, "cpus_per_worker_", None),
                "cpus_per_read": getattr(self, "cpus_per_read_", None),
                "cluster": getattr(self, "cluster_", None)}


class _ShardScorer:
    """A Ray Data actor: one scorer, set up once, scoring one shard per call. The scorer's own
    errors (a model missing on this node, a bad record) come back as results, so the driver
    raises them with their type and message (Ray would keep only their text) and Ray does
    not retry what would fail again; a dead process is Ray's to restart and retry."""

    def __init__(self, cls: type, params: dict, threads: int):
        self.error: Exception | None = None
        try:
            if trait(cls, "runs_a_model"):
                import torch

                torch.set_num_threads(threads)
            self.scorer = cls(**params)
            self.scorer.setup()
        except Exception as error:
            self.error = error

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"index": batch["index"], "result": np.array([self._score(shard) for shard in batch["shard"]],
                                                            dtype=object)}

    def _score(self, shard: bytes) -> bytes:
        try:
            result = self.error or self.scorer.score(pickle.loads(shard))  # the driver's bytes, this session
        except Exception as error:
            result = error
        return _pickled(result)


def _read_parts(batch: dict[str, np.ndarray], source: Source) -> dict[str, np.ndarray]:
    """A Ray Data task: the records of each part (Examples with their content hashes, and
    Rejects), or the error that stopped it."""
    results = []
    for start, end, first_line in zip(batch["start"], batch["end"], batch["first_line"]):
        try:
            records = source.read_part(Part(int(start), int(end), int(first_line)))
            for record in records:
                if isinstance(record, Example):
                    record.content_hash  # hashed here, not in the driver (a cached property: it travels)
            results.append(records)
        except FileNotFoundError:
            results.append(EngineError(f"{source.path} is not readable on a Ray worker's node: on a cluster of "
                                       "several machines, put the input on storage every node sees"))
        except Exception as error:
            results.append(error)
    return {"index": batch["index"], "result": np.array([_pickled(r) for r in results], dtype=object)}


def _pickled(result) -> bytes:
    try:
        return pickle.dumps(result)
    except Exception:  # an error that does not pickle: its text
        return pickle.dumps(EngineError(f"a Ray worker failed: {type(result).__name__}: {result}"))


def _within(seconds: float, rows, message) -> Iterator[tuple[int, object]]:
    """The rows' (index, result), raising EngineError(message(seconds)) when none comes for
    `seconds`: Ray waits for resources forever, the run must not."""
    results: queue.Queue = queue.Queue()

    def pull() -> None:
        try:
            for row in rows:
                result = pickle.loads(row["result"])  # an actor's or read task's bytes, this session
                results.put(result if isinstance(result, BaseException) else (int(row["index"]), result))
        except BaseException as error:  # raised in the caller's thread below
            results.put(error)
        results.put(None)

    threading.Thread(target=pull, daemon=True, name="sftpick-ray-results").start()
    deadline = time.monotonic() + seconds
    while True:
        try:
            item = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise EngineError(message(seconds)) from None
        if item is None:
            return
        if isinstance(item, BaseException):
            raise _cause(item)
        deadline = time.monotonic() + seconds
        yield item


def _cause(error: BaseException) -> BaseException:
    """The scorer's own error (e.g. ModelNotFoundError) from inside Ray's wrappers; when Ray
    kept only its text (an actor whose setup() failed), the text's last line."""
    seen = error
    while seen is not None:
        if not type(seen).__module__.startswith("ray."):
            cause = getattr(seen, "cause", None)
            return seen if cause is None else _cause(cause)
        seen = getattr(seen, "cause", None) or seen.__cause__
    lines = [line.strip() for line in (getattr(error, "error_msg", None) or str(error)).splitlines() if line.strip()]
    return EngineError(f"a Ray worker failed: {lines[-1] if lines else type(error).__name__}")


def _quiet_ray_data() -> None:
    """sftpick draws its own progress; Ray Data's bars and plan lines would interleave with it."""
    import logging

    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    if hasattr(context, "wait_for_min_actors_s"):  # Ray Data then ends a run whose actors never start, after ours fails
        context.wait_for_min_actors_s = int(stall_seconds()) + 5
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False
