"""The curation stage's per-record work, as scorers of the streaming driver (engines/stream.py),
so it is cached per record content, resumed after a kill and shown with progress like any
scorer's: MinHash band keys and sentence vectors are `embeds` steps (their global step, the
grouping, runs in stage.py over every row's keys), the test-set match a plain column."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..embeddings import VECTOR, example_text
from ..examples import Example
from ..scorers.knn import KnnScorer
from . import decontaminate, minhash

MATCHED = "matched"
HASH_VERSION = 3  # of the shingle hashes and sketches: cached rows made by another version are not reused


@dataclass(eq=False)
class MinHashStep:
    """Each record's LSH band keys (`minhash.band_keys` of its signature, 8 bytes a band) and
    its b-bit sketch (`minhash.sketches`, a byte a permutation, which verifies a candidate
    pair), side by side in one uint64 row: the near-duplicate test's input."""

    threshold: float
    ngram: int
    permutations: int
    seed: int = 1
    name = "near duplicates"
    columns = ()
    embeds = True

    def __post_init__(self):
        self.bands, self.rows = minhash.lsh_params(self.threshold, self.permutations)

    def setup(self) -> None:
        pass

    def vector_config(self) -> dict:
        return {"step": "minhash", "ngram": self.ngram, "permutations": self.permutations, "seed": self.seed,
                "bands": self.bands, "rows": self.rows, "text": "whole, normalised", "hash": HASH_VERSION,
                "sketch_bits": 8}

    def config(self) -> dict:
        return {**self.vector_config(), "threshold": self.threshold}

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        signatures = minhash.signatures([example_text(e) for e in batch], num_perm=self.permutations,
                                        ngram=self.ngram, seed=self.seed)
        sketches = minhash.sketches(signatures).view(np.uint64)  # permutations: a multiple of 8
        return {VECTOR: np.concatenate([minhash.band_keys(signatures, self.bands, self.rows), sketches], axis=1)}

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(band keys, sketches) of rows made by `score`."""
        return rows[:, :self.bands], rows[:, self.bands:].view(np.uint8)  # views: no copy of 1M rows

    def search(self, vectors: np.ndarray) -> dict:
        return {}  # the grouping needs to know which rows are still in: stage.py does it


@dataclass(kw_only=True, eq=False)
class SentenceVectors(KnnScorer):
    """The kNN scorer's embedding step alone, under the same cache key: SemDeDup's input, and
    vectors a later kNN scorer or diversity strategy finds made."""

    name = "semantic duplicates"

    def __post_init__(self):
        self.columns = ()

    def search(self, vectors: np.ndarray) -> dict:
        return {}


@dataclass(eq=False)
class TestSetMatch:
    """The test record (`file row N`) each pool record shares long n-grams with, or None."""

    index: decontaminate.NgramIndex = field(repr=False)
    name = "decontaminate"
    columns = (MATCHED,)

    def setup(self) -> None:
        pass

    def config(self) -> dict:
        return {"step": "decontaminate", "tests": self.index.fingerprint()}

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        return {MATCHED: np.array(contaminated(batch, self.index), dtype=object)}


def contaminated(examples: list[Example], index: decontaminate.NgramIndex) -> list[str | None]:
    """For each example, the test record (`file row N`) it shares long n-grams with, or None."""
    return [None if m is None else f"{m[0]} row {m[1]}" for m in index.match([example_text(e) for e in examples])]
