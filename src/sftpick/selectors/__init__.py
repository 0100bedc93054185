"""Selectors choose rows of a score table. This is the whole selector contract.

A selector is a dataclass (`Selector`, an `options.Component`) whose options are its fields
made with `options.option(...)`; `by` and `ascending` (the ranking, given to every strategy
by `select`) are plain fields. `check()` validates the options before any work;
`select(table, budget, embeddings=None) -> np.ndarray` returns the chosen positions in the
table, in pick order, deterministic for a given seed, at most `budget` (a count: budgets are
resolved by budget.parse_budget first). Class attributes say what it needs:
`needs_embeddings` (one vector per table row, made as its `embedding()` says: by default any
sentence embedder's vectors of the whole record), `needs_ranking` (a `by` column),
`default_by` (its ranking column when the scores have it). After `select` it may leave
`stats_` (figures for the manifest) and `notes_` (why it returned fewer than asked); a
selector that needs to embed other records (a k-center seed set) is given `embed_(examples)`,
vectors in the same space as its embeddings. A strategy that puts a model in the loop
(`needs_records`) is given, before `select`, `records_` (the candidates' records, in table
order) and `workdir_` (a folder in the run's cache, `strategies/<workdir_name or name>/`,
where each stage it caches survives a killed run; a temporary one when the scores have no
cache; strategies that cache the same features share one by `workdir_name`); `default_scorers` is
what `run` scores for it when no `--scorers` is given.

A new strategy is one module that registers itself (`@register`) and one import line below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from ..budget import parse_budget  # noqa: F401  (selectors and their callers parse budgets)
from ..errors import OptionError, did_you_mean
from ..options import Component
from .ranking import check_embeddings

SELECTORS: dict[str, type] = {}


@dataclass(kw_only=True, eq=False)
class Selector(Component):
    needs_embeddings: ClassVar[bool] = False
    needs_ranking: ClassVar[bool] = False  # topk: it cannot choose by coverage alone
    needs_records: ClassVar[bool] = False  # a model in the loop: it reads the candidates' records
    workdir_name: ClassVar[str | None] = None  # its folder under the cache's strategies/ (default: its name)
    default_by: ClassVar[str | None] = None
    default_scorers: ClassVar[tuple[str, ...] | None] = None  # what `run` scores when not told (default: ifd)

    by: str | None = "ifd"  # the ranking column, best first (`ascending`: lower is better)
    ascending: bool = False

    def select(self, table: pa.Table, budget: int, embeddings: np.ndarray | None = None) -> np.ndarray:
        """Positions of `table` chosen, in pick order, at most `budget`: nothing from an empty
        table or for a zero budget, else `choose` with the embeddings checked (one finite row
        per table row) when the strategy needs them."""
        self.check()
        if table.num_rows == 0 or budget <= 0:
            self.stats_, self.notes_ = {}, []
            return np.empty(0, np.int64)
        vectors = check_embeddings(embeddings, table.num_rows, self.name) if self.needs_embeddings else None
        return np.asarray(self.choose(table, budget, vectors), dtype=np.int64)

    def choose(self, table: pa.Table, budget: int, vectors: np.ndarray | None) -> np.ndarray:
        """What each strategy implements (no input validation: `select` did it)."""
        raise NotImplementedError

    def prepare(self, table: pa.Table) -> None:
        """Called with the whole score table before the vectors are made (the table's
        metadata says which models scored it): a strategy whose settings follow the scores'
        sets them here. Nothing by default."""

    def embedding(self) -> tuple[str | None, str, int | None]:
        """The vectors it needs: (embedder, text embedded, tokens read). By default any sentence
        embedder's vectors of the whole record serve (those beside the scores, if any)."""
        return None, "whole", None


def register(cls: type) -> type:
    SELECTORS[cls.name] = cls
    return cls


def make_selector(name: str, **options) -> Selector:
    if name not in SELECTORS:
        raise OptionError(f"unknown strategy {name!r}{did_you_mean(name, SELECTORS)}; "
                          f"valid strategies: {', '.join(sorted(SELECTORS))}")
    return SELECTORS[name](**options)


from . import topk  # noqa: E402,F401  (modules register themselves)
from . import (clusters, deita, diverse_evol, facility,  # noqa: E402,F401; noqa: E402,F401  (a model in the loop)
               kcenter, less, lift, mods, pre_experience, rds, tagcos)
