"""Curation before selection: what every SFT curation pipeline (DataFlow, data-juicer, the Tulu 3
and SmolLM recipes) removes before it selects, found before any model scores a record.

- exact duplicates (on by default): a record whose content (the key the cache uses) equals an
  earlier record's; the first in file order is kept;
- near duplicates (`dedup="near"`): MinHash LSH over word n-gram shingles (minhash.py);
- semantic duplicates (`dedup="semantic"`): SemDeDup over sentence embeddings (semdedup.py);
- test-set contamination (`decontaminate=[FILE, …]`): long n-grams shared with a test record
  (decontaminate.py).

A removed record stays a row of the score table, with `removed` (the reason), `duplicate_of`
(the kept twin's row) or `matched` (the test file and row), and no scores (an exact duplicate
shares its twin's, which cost nothing); selection drops it first, counted per reason. The
stage itself is stage.py; docs/methods/dedup.md and decontamination.md say what each follows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..options import option
from .decontaminate import DEFAULT_MIN_OVERLAP, DEFAULT_NGRAM as DECONTAMINATE_NGRAM
from .minhash import DEFAULT_NGRAM, DEFAULT_PERMUTATIONS, DEFAULT_THRESHOLD
from .semdedup import DEFAULT_EPS, KEEP

DEDUP = ("exact", "near", "semantic", "none")
EXACT, NEAR, SEMANTIC, CONTAMINATED = "exact duplicate", "near duplicate", "semantic duplicate", "contaminated"
REASONS = (CONTAMINATED, EXACT, NEAR, SEMANTIC)  # the order a record is tested in
COLUMNS = ("removed", "duplicate_of", "matched")  # what the stage adds to the score table
DROP_LABELS = {CONTAMINATED: "contaminated: shares long n-grams with a test record (--decontaminate)",
               EXACT: "exact duplicate of an earlier record",
               NEAR: "near duplicate of an earlier record (--dedup near)",
               SEMANTIC: "semantic duplicate of a kept record (--dedup semantic)"}


@dataclass(kw_only=True)
class DedupSettings:
    """Which duplicates are dropped before selection, and how they are found."""

    dedup: str = option("exact", "Duplicates dropped before selection: exact (same content) | near (MinHash LSH, "
                                 "also exact) | semantic (SemDeDup, also exact) | none (keep them).", choices=DEDUP)
    dedup_threshold: float = option(DEFAULT_THRESHOLD, "--dedup near: Jaccard similarity of word n-gram shingles "
                                                       "at which two records are near duplicates.", gt=0, le=1)
    dedup_ngram: int = option(DEFAULT_NGRAM, "--dedup near: words per shingle.", ge=1, what="a whole number")
    dedup_permutations: int = option(DEFAULT_PERMUTATIONS, "--dedup near: MinHash permutations (more: finer "
                                                           "estimates, more time and memory).", ge=8,
                                     what="a whole number")
    semdedup_eps: float = option(DEFAULT_EPS, "--dedup semantic: drop a record whose cosine similarity to an "
                                              "earlier record of its k-means cluster (SemDeDup's order) exceeds "
                                              "1 - eps.", gt=0, le=1)
    semdedup_clusters: int | None = option(None, "--dedup semantic: k-means clusters (default: grows with the "
                                                 "pool, docs/methods/dedup.md).", ge=1, what="a whole number")
    semdedup_keep: str = option(KEEP[0], "--dedup semantic: which record of a duplicate group is kept (as the "
                                         "authors' which_to_keep).", choices=KEEP)


@dataclass(kw_only=True)
class MatchSettings:
    """When a pool record counts as a copy of a test record."""

    decontaminate_ngram: int = option(DECONTAMINATE_NGRAM, "Words of the n-grams decontamination matches.",
                                      ge=1, what="a whole number")
    decontaminate_min_overlap: float = option(DEFAULT_MIN_OVERLAP, "Share of a test record's n-grams a pool "
                                                                   "record must hold to match it (0: any one).",
                                              ge=0, le=1)


@dataclass(kw_only=True)
class CurateSettings(DedupSettings, MatchSettings):
    """What is removed before selection (every command that scores a pool)."""

    decontaminate: list[Path] = option([], "Test set whose records must not be in the pool (any supported format; "
                                           "repeatable): a pool record sharing a long n-gram with one is dropped.",
                                       repeat=True)

    def curates(self) -> bool:
        """Whether anything is looked for before the scorers run (exact duplicates cost nothing)."""
        return self.dedup in ("near", "semantic") or bool(self.decontaminate)


def removal_counts(table: pa.Table) -> dict[str, int]:
    """Records of a score table removed before selection, per reason (in `REASONS` order)."""
    if "removed" not in table.column_names:
        return {}
    counts = {v["values"]: v["counts"] for v in table.column("removed").value_counts().to_pylist()}
    return {reason: counts[reason] for reason in REASONS if reason in counts}


def removed_mask(table: pa.Table) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows of a score table the curation stage removed, and how many per reason, as
    selection's drop reasons (it drops them before any filter)."""
    if "removed" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool), {}
    removed = table.column("removed").is_valid().to_numpy(zero_copy_only=False)
    return removed, {DROP_LABELS[reason]: n for reason, n in removal_counts(table).items()}
