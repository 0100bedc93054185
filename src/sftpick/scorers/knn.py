"""Distance to the k-th nearest neighbour in sentence-embedding space (`Knn6` for k = 6).

Cao et al., "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models" (arXiv 2307.06290): a sample far from its neighbours adds diversity. Each distinct
example is embedded (whole text, or `embed_text="instruction"`), L2-normalised, and its
Euclidean distance to its k-th nearest other example is the score (in [0, 2]).

Two steps (`embeds = True`): `score(batch)` embeds a batch anywhere an engine runs it (in
worker processes or Ray actors; each record's vector is cached by content and embedder, so
adding a record embeds one record), and `search(vectors)` runs once in the driver over every
distinct example's vector. Search is exact by default (faiss, query blocks, memory n·k);
`knn_index="hnsw"|"ivf"` builds an approximate faiss index instead (HNSW: M 32, efSearch
max(64, 4k); IVF-Flat: 2·sqrt(n) lists trained on 50 per list, 8 probed), and its recall@k
against exact search is measured on 1,000 sampled queries and printed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..embeddings import EMBED_TEXTS, VECTOR, VECTOR_DTYPES, embed_examples, vector_config
from ..errors import DataError
from ..examples import Example
from ..models import DEFAULT_EMBEDDER, device_option, resolve_device
from ..options import Component, option
from . import register

INDEXES = ("exact", "hnsw", "ivf")
QUERY_BLOCK = 4096
RECALL_QUERIES = 1000
IVF_NPROBE = 8
HNSW_M = 32


@register
@dataclass(kw_only=True, eq=False)
class KnnScorer(Component):
    name = "knn"
    embeds = True
    runs_a_model = True

    knn_k: int = option(6, "k of `knn`: the distance to the k-th nearest other record (`--scorers knn_K` sets it "
                           "too).", ge=1)
    embedder: str = option(DEFAULT_EMBEDDER, "Sentence-transformers model of `knn_K`: all-minilm-l6-v2 (embedded), "
                                             "hub id or path.")
    embed_text: str = option("whole", "Text embedded for `knn_K`: whole | instruction.", choices=EMBED_TEXTS[:2])
    knn_index: str = option("exact", "kNN search: exact | hnsw | ivf (approximate; recall@k printed).",
                            choices=INDEXES)
    vectors_dtype: str = option("float32", "How `knn_K`'s vectors are stored (cache and vectors file): float32 | "
                                           "float16 (half the space; searched in float32).", choices=VECTOR_DTYPES)
    embed_max_length: int | None = option(None, "Tokens of each record the embedder reads (default: its own, 256 for "
                                                "all-MiniLM-L6-v2; 512 is that model's limit and Superfiltering's).",
                                          ge=1)
    device: str = device_option()
    seed: int = option(0, "Random seed (k-means of an approximate kNN index; the strategies' k-means).")

    def __post_init__(self):
        self.columns = (f"knn_{self.knn_k}",)

    def check(self) -> None:
        super().check()
        resolve_device(self.device)

    def setup(self) -> None:
        self.check()
        self.stats_: dict = {}

    def vector_config(self) -> dict:
        """The key of each record's cached vector (the embedding step's output)."""
        return vector_config(self.embedder, self.embed_text, self.vectors_dtype, self.embed_max_length)

    def config(self) -> dict:
        return {"scorer": self.name, "k": self.knn_k, **self.vector_config(),
                "index": self.knn_index, "seed": self.seed, "distance": "euclidean, normalised vectors"}

    def score(self, batch: list[Example]) -> dict[str, np.ndarray]:
        """The embedding step: one vector per example, in the storage dtype."""
        vectors = embed_examples(batch, model=self.embedder, text=self.embed_text, device=self.device,
                                 max_length=self.embed_max_length)
        return {VECTOR: vectors.astype(self.vectors_dtype)}

    def search(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """The global step: each distinct example's distance to its k-th nearest other one."""
        if len(vectors) <= self.knn_k:
            raise DataError(f"knn_{self.knn_k} needs more than {self.knn_k} distinct records; got {len(vectors)}")
        distances, self.stats_ = kth_neighbour_distance(vectors, self.knn_k, index=self.knn_index, seed=self.seed)
        if "recall_at_k" in self.stats_:
            _say(f"knn_{self.knn_k}: {self.knn_index} index, recall@{self.knn_k} against exact search "
                 f"on {self.stats_['recall_queries']} sampled queries = {self.stats_['recall_at_k']:.4f}")
        return {self.columns[0]: distances}


def kth_neighbour_distance(vectors: np.ndarray, k: int, *, index: str = "exact", seed: int = 0,
                           block: int = QUERY_BLOCK) -> tuple[np.ndarray, dict]:
    """Euclidean distance from each row to its k-th nearest other row, and search stats."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    search = _exact_search(vectors) if index == "exact" else _approximate_search(vectors, index, k, seed)
    ids, sq = _blocked(search, vectors, k + 1, block)
    stats = {"index": index, "n": len(vectors), "k": k}
    if index != "exact":
        stats.update(recall_at_k(vectors, ids, k, seed=seed))
    return np.sqrt(np.maximum(_kth_other(ids, sq, k), 0.0)).astype(np.float64), stats


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = QUERY_BLOCK
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Ids and squared distances of the k nearest rows of `vectors` for each query (faiss, exact)."""
    import faiss

    return _blocked(lambda q, kk: faiss.knn(q, vectors, kk)[::-1], queries, k, block)


def recall_at_k(vectors: np.ndarray, ids: np.ndarray, k: int, *, seed: int = 0,
                queries: int = RECALL_QUERIES) -> dict:
    """Share of the exact k nearest others (self excluded) that the approximate ids found,
    averaged over a random sample of queries."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False))
    exact_ids, _ = exact_neighbours(vectors, vectors[sample], k + 1)
    found = 0
    for row, query in enumerate(sample):
        truth = [i for i in exact_ids[row] if i != query][:k]
        approx = [i for i in ids[query] if i != query and i >= 0][:k]
        found += len(set(truth) & set(approx))
    return {"recall_at_k": found / (k * len(sample)), "recall_queries": len(sample)}


def _blocked(search, queries: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(queries), k), dtype=np.int64)
    sq = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), block):
        ids[start: start + block], sq[start: start + block] = search(queries[start: start + block], k)
    return ids, sq


def _exact_search(vectors: np.ndarray):
    import faiss

    return lambda queries, k: faiss.knn(queries, vectors, k)[::-1]


def _approximate_search(vectors: np.ndarray, kind: str, k: int, seed: int):
    import faiss

    n, dim = vectors.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(64, 4 * k)
    else:
        nlist = max(1, min(int(2 * np.sqrt(n)), n // 50))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
        index.cp.niter, index.cp.seed = 10, seed
        train = np.random.default_rng(seed).choice(n, size=min(n, 50 * nlist), replace=False)
        index.train(vectors[np.sort(train)])
        index.nprobe = min(nlist, IVF_NPROBE)
    index.add(vectors)

    def search(queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        sq, ids = index.search(queries, kk)
        return ids, sq
    return search


def _kth_other(ids: np.ndarray, sq: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest distance per row among neighbours other than the row itself: the
    self match is removed where found (ties may place it anywhere), else the last column."""
    keep = (ids != np.arange(len(ids))[:, None]) & (ids >= 0)
    no_self = keep.all(axis=1)
    keep[no_self, -1] = False
    position = np.argmax(np.cumsum(keep, axis=1) == k, axis=1)
    kth = sq[np.arange(len(sq)), position]
    return np.where(keep.sum(axis=1) >= k, kth, np.nan)


def _say(message: str) -> None:
    from ..console import make_console

    make_console().print(message)
