"""Scorers add columns to the score table. A scorer is a small object with a `name`, the
`columns` it produces, a `config()` (plain data: what made its numbers; it keys the resume
cache and goes into the manifest; known before `setup()`, without loading a model: an
engine keys the cache in the driver while the models load in its workers) and
`score(batch) -> {column: array}`, a pure function of
the batch so the local engine and a Ray actor run the same object. Heavy state loads once in
`setup()`; `check()` validates every option before that (nothing loads), so a typo fails in
a second. A scorer may return `REJECT`: per example a reason string, or None where scored.
An optional `cost(examples)` (e.g. token counts) lets the engine sort and batch by length.
A scorer with `embeds = True` (kNN) returns a vector per example from `score(batch)` and
computes its columns from every distinct example's vector in `search(vectors)`; one with
`derived = True` (rule) computes its columns from the others' via `derive(columns)`.
The full list of what an engine reads from a scorer is in engines/__init__.py.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..examples import Example

REJECT = "_reject"


class Scorer(Protocol):
    name: str
    columns: tuple[str, ...]

    def check(self) -> None: ...

    def setup(self) -> None: ...

    def config(self) -> dict: ...

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]: ...


SCORERS: dict[str, type] = {}


def register(cls: type) -> type:
    SCORERS[cls.name] = cls
    return cls


def make_scorer(name: str, **options) -> Scorer:
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; valid scorers: {', '.join(sorted(SCORERS))}")
    return SCORERS[name](**options)


from . import ifd  # noqa: E402,F401  (modules register themselves)
from . import knn, length, mtld, reward, rule  # noqa: E402,F401  (Instruction Mining indicators)
from . import deita  # noqa: E402,F401  (DEITA's complexity and quality scorers)
from . import judge  # noqa: E402,F401  (AlpaGasus: an LLM judge over the OpenAI API)
from . import instruction_ppl  # noqa: E402,F401  (Cherry LLM: perplexity of the instruction alone)
