"""The engine contract, and what an engine reads from a scorer (the scorer contract is in
scorers/__init__.py). An engine decides where the input is parsed (`chunks(source, size)`:
chunks of records in file order) and where a shard's `scorer.score(shard)` runs
(`scored_shards`: `(shard index, {column: array})` in completion order); the driver
(engines/stream.py) owns the run: dedup, sorting by cost, the resume cache, progress.

Only the driver writes the resume cache, keyed by content hash, so a shard that a killed
worker had to redo is saved once.

What an engine reads from a scorer: `name`, `columns`, `config()` (the cache key: known
before `setup()`, so it needs no model), `setup()`, `score(batch)`, and these optional class
attributes (`TRAITS`: default False):
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


def redact_address(address: str | None) -> str | None:
    """A cluster address without the user name and password it may carry (`ray://u:p@host`)."""
    return None if address is None else re.sub(r"^([a-z][a-z0-9+.-]*://)?[^/@]*@", r"\1", address)
