"""Engines read the input and run scorers over shards of examples. `engines/local.py` owns
the run (dedup, sorting by cost, the resume cache, progress); an engine decides where the
input is parsed (`chunks(source, size)`: chunks of records in file order) and where a shard's
`scorer.score(shard)` runs (`scored_shards`: `(shard index, {column: array})` in completion
order):

- `local`: in this process, or with `workers` > 1 in worker processes (engines/pool.py),
  only for scorers that run a model; the input is read here;
- `ray`: a Ray Data actor pool (engines/ray.py), `workers` actors, each with its own copy
  of the scorer, and Ray Data tasks that parse the input's parts; `ray_address` joins a
  running cluster, else a local one starts.

Only the driver (this process) writes the resume cache, keyed by content hash, so a shard
that a killed worker had to redo is saved once.

What an engine reads from a scorer (the scorer contract, see scorers/__init__.py too):
`name`, `columns`, `config()` (the cache key: known before `setup()`, so it needs no model),
`setup()`, `score(batch)`, and these optional class attributes (`TRAITS`: default False):
- `runs_a_model`: worth a worker process or a Ray actor. Scorers without one stay in the
  driver on every engine: shipping a record costs more than scoring it.
- `embeds` (kNN): `score(batch)` returns `{"vector": [n, d]}`, scored like any batch and
  cached per record under `vector_config()`, not `config()`; then `search(vectors)`, the
  global step, runs once in the driver over every distinct example's vector.
- `derived`: columns computed from the others by `derive`, in the driver; never sharded.
- `keeps_journal`: saves each record as it finishes through `open_journal(Journal)` (the
  judge); stays in the driver on every engine, see engines/ray.py.
Optional methods and attributes set by `setup()`: `cost(examples)` (sort and batch by
length), `token_budget_` and `piece_cost_` (how much of a shard one in-process call takes,
for progress), `stats_` (figures for the manifest). A worker rebuilds the scorer from its
constructor arguments, read back from the attributes of the same names
(`pool.constructor_params`).
"""
from __future__ import annotations

import re
from typing import Iterator, Protocol

from ..examples import Example
from ..io import Chunk, Source

TRAITS = ("embeds", "derived", "runs_a_model", "keeps_journal")


class EngineError(RuntimeError):
    """The engine cannot run the work: a cluster without the resources asked for, or no progress."""


def trait(scorer, name: str) -> bool:
    """One of the optional class attributes in `TRAITS` (False when the scorer does not set it)."""
    if name not in TRAITS:
        raise KeyError(f"{name!r} is not a scorer trait; traits: {', '.join(TRAITS)}")
    return bool(getattr(scorer, name, False))


class Engine(Protocol):
    name: str

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc) -> None: ...

    def chunks(self, source: Source, size: int) -> Iterator[Chunk]:
        """The input's records, `size` at a time, in file order, rows numbered through the file."""

    def distributes(self, scorer, n_shards: int) -> bool:
        """Whether this scorer's shards go to `scored_shards` (else the caller scores them in-process)."""

    def scored_shards(self, scorer, shards: list[list[Example]]) -> Iterator[tuple[int, dict]]:
        """(shard index, scores) for every shard, in completion order."""

    def settings(self) -> dict:
        """What the manifest records: engine, workers, address (without credentials), device."""


class LocalEngine:
    """This process; with `workers` > 1, worker processes for the scorers that run a model, one
    pool per scorer kept for the whole run (its model loads once per worker)."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = workers
        self.pools: dict = {}  # id(scorer) -> its WorkerPool, started at its first shards, kept for the run

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    def chunks(self, source: Source, size: int) -> Iterator[Chunk]:
        return source.chunks(size)

    def distributes(self, scorer, n_shards: int) -> bool:
        return self.workers > 1 and n_shards > 1 and trait(scorer, "runs_a_model")

    def scored_shards(self, scorer, shards: list[list[Example]]) -> Iterator[tuple[int, dict]]:
        from .pool import WorkerPool

        if id(scorer) not in self.pools:  # its model loads once per worker, not once per chunk
            self.pools[id(scorer)] = WorkerPool(scorer, self.workers)
        return self.pools[id(scorer)].scored_shards(shards)

    def settings(self) -> dict:
        return {"engine": self.name, "workers": self.workers}


def _local_engine(workers: int, ray_address: str | None, gpus_per_worker: float) -> LocalEngine:
    return LocalEngine(workers)  # the Ray settings were refused by check_engine


def _ray_engine(workers: int, ray_address: str | None, gpus_per_worker: float) -> Engine:
    from .ray import RayEngine  # imported only when asked for: the base install has no Ray

    return RayEngine(workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker)


ENGINES = {"local": _local_engine, "ray": _ray_engine}  # name -> factory(workers, ray_address, gpus_per_worker)


def check_engine(engine: str, *, workers: int = 1, ray_address: str | None = None,
                 gpus_per_worker: float = 0.0, device: str | None = None) -> None:
    """The engine exists, is installed and takes the settings given; nothing starts."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers={workers!r} should be a whole number >= 1")
    if engine != "ray":
        for name, value, default in (("ray_address", ray_address, None), ("gpus_per_worker", gpus_per_worker, 0)):
            if value not in (default, None):
                raise ValueError(f"{name}={value!r} applies to engine 'ray' only (engine={engine!r}); "
                                 "add --engine ray")
        return
    from .ray import check_ray

    check_ray(gpus_per_worker=gpus_per_worker, device=device)


def make_engine(engine: str = "local", *, workers: int = 1, ray_address: str | None = None,
                gpus_per_worker: float = 0.0) -> Engine:
    """An engine by name (no validation: `check_engine` first). Enter it to start it."""
    return ENGINES[engine](workers, ray_address, gpus_per_worker)


def redact_address(address: str | None) -> str | None:
    """A cluster address without the user name and password it may carry (`ray://u:p@host`)."""
    return None if address is None else re.sub(r"^([a-z][a-z0-9+.-]*://)?[^/@]*@", r"\1", address)
