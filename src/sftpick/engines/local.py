"""The local engine: this process, or with `workers` > 1 worker processes (engines/pool.py) for
the scorers that run a model, one pool per scorer kept for the whole run (its model loads
once per worker). The input is read here."""
from __future__ import annotations

from typing import Iterator

from ..examples import Example
from ..io import Chunk, Source
from .base import trait


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
