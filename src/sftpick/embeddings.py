"""Sentence embeddings of examples, shared by the kNN indicator and the diversity selectors.

Vectors are L2-normalised (so inner product = cosine similarity) and kept two ways, never
as pickle: per record in a content-addressed cache (`cached_vectors`: a `ShardStore` keyed by
the embedder, its revision, the text embedded and the storage dtype, so adding a record
embeds one record), and per row of a score table in a vectors file beside the scores
(`X.embeddings.parquet`: `row` + a fixed-size list column, the embedder's `vector_config`
in the schema metadata), which the selectors read in blocks, for their candidates only.
Storage may be float16 (half the disk and memory); arithmetic is always float32.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .cache import DigestIndex, ShardStore, column_values, digests, matrix_column
from .errors import OptionError
from .examples import Example
from .models import DEFAULT_EMBEDDER, embedder_revision, load_embedder
from .writers import sibling, write_parquet

EMBED_TEXTS = ("whole", "instruction", "prompt")
LM_PREFIX = "lm:"  # `lm:smollm2-135m`: a causal LM's mean-pooled last hidden state, not a sentence embedder
VECTOR = "vector"  # the column of a vector per record, in the cache and in vectors files
VECTOR_DTYPES = ("float32", "float16")
READ_BLOCK = 65_536  # vectors-file rows read at a time


def example_text(example: Example, what: str = "whole") -> str:
    """`whole`: instruction, input and response joined by newlines; `instruction`: the context
    only; `prompt`: the Alpaca prompt the response would follow (what Cherry LLM embeds)."""
    if what == "prompt":
        from .templates import render_prompt

        return render_prompt(example, "alpaca")
    if what == "whole":
        return "\n".join(part for part in (example.instruction, example.input, example.response) if part)
    if what == "instruction":
        return "\n".join(part for part in (example.instruction, example.input) if part)
    raise OptionError(f"embed_text={what!r} is not one of {', '.join(EMBED_TEXTS)}")


def embed_texts(texts: list[str], *, model: str = DEFAULT_EMBEDDER, device: str = "auto",
                batch_size: int = 64, progress: bool = False, max_length: int | None = None) -> np.ndarray:
    """One vector per text. `max_length`: the tokens of each text the model reads (default:
    the sentence embedder's own, 256 for all-MiniLM-L6-v2; 512 for an LM's hidden states)."""
    if model.startswith(LM_PREFIX):
        return lm_hidden_states(texts, model[len(LM_PREFIX):], device=device, max_length=max_length or 512)
    encoder = load_embedder(model, device=device)
    if max_length is not None:
        encoder.max_seq_length = max_length
    vectors = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=progress)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def lm_hidden_states(texts: list[str], model: str, *, device: str = "auto", max_length: int = 512,
                     token_budget: int = 1024) -> np.ndarray:
    """The mean over each text's tokens of the causal LM's last hidden state (after its final
    norm), at most `max_length` tokens: the representation Cherry LLM clusters
    (`data_analysis.py --mod pre`, `hidden_states[-1].mean(dim=1)`). Not normalised."""
    import torch

    from .models import load_causal_lm
    from .spans import micro_batches

    lm = load_causal_lm(model, device=device)
    ids = [row[:max_length] for row in lm.tokenizer(texts)["input_ids"]]
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
    vectors = np.zeros((len(texts), lm.model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for batch in micro_batches(np.array([len(row) for row in ids]), token_budget):
            width = max(len(ids[i]) for i in batch)
            padded = torch.tensor([ids[i] + [pad or 0] * (width - len(ids[i])) for i in batch], device=lm.device)
            # Right padding under the causal mask: no real token sees a pad, so no attention mask.
            hidden = lm.model.base_model(input_ids=padded).last_hidden_state.float()
            for r, i in enumerate(batch):
                vectors[i] = hidden[r, : len(ids[i])].mean(dim=0).cpu().numpy()
    return vectors


def embed_examples(examples: list[Example], *, model: str = DEFAULT_EMBEDDER, text: str = "whole",
                   device: str = "auto", batch_size: int = 64, progress: bool = False,
                   max_length: int | None = None) -> np.ndarray:
    """One normalised vector per example, in the order given."""
    return embed_texts([example_text(e, text) for e in examples], model=model, device=device,
                       batch_size=batch_size, progress=progress, max_length=max_length)


def embeddings_path(scores_path: str | Path) -> Path:
    """Where the embeddings of a score table live: `X.parquet` -> `X.embeddings.parquet`."""
    return sibling(scores_path, ".embeddings.parquet")


def vector_config(model: str = DEFAULT_EMBEDDER, text: str = "whole", dtype: str = "float32",
                  max_length: int | None = None) -> dict:
    """What makes a record's vector: the key of the per-record cache and the metadata of a
    vectors file (known without loading the embedder). `max_length` is named only when set
    (the embedder's own otherwise), so the keys made before it existed still hold."""
    if dtype not in VECTOR_DTYPES:
        raise OptionError(f"vectors_dtype={dtype!r} is not one of {', '.join(VECTOR_DTYPES)}")
    return {"model": model, "revision": embedder_revision(model), "text": text,
            "normalized": not model.startswith(LM_PREFIX), "dtype": dtype,
            **({"max_length": max_length} if max_length is not None else {})}


def cached_vectors(examples: list[Example], config: dict, cache_dir: Path | None, *, device: str = "auto",
                   compute: Callable[[list[Example]], np.ndarray] | None = None,
                   store_name: str = "vectors") -> np.ndarray:
    """One float32 vector per example, made as `config` says: from the per-record cache under
    `cache_dir` where done, the rest computed (identical records once) and saved there, stored
    in `config["dtype"]`. `compute` makes the vectors of a list of records (default: the
    sentence or LM embedding `config` names); any featurizer caches its vectors here, keyed
    by the record's content and `config` (`store_name` names its folder)."""
    keys = digests([e.content_hash for e in examples])
    store = ShardStore(cache_dir, store_name, config) if cache_dir is not None else None
    index, cached = store.load() if store else (DigestIndex(), None)
    found = index.find(keys)
    hit, todo = np.flatnonzero(found >= 0), np.flatnonzero(found < 0)
    parts = [(hit, column_values(cached.column(VECTOR).take(pa.array(found[hit]))))] if len(hit) else []
    if len(todo):
        _, first, inverse = np.unique(keys[todo], return_index=True, return_inverse=True)
        fresh = [examples[todo[i]] for i in first]
        compute = compute or functools.partial(embed_examples, model=config["model"], text=config["text"],
                                               device=device, progress=len(fresh) > 5000,
                                               max_length=config.get("max_length"))
        vectors = np.asarray(compute(fresh)).astype(config.get("dtype", "float32"))
        if store:
            store.save([e.content_hash for e in fresh], {VECTOR: vectors})
            store.flush()
        parts.append((todo, vectors[inverse.ravel()]))
    out = np.zeros((len(examples), parts[0][1].shape[1] if parts else 0), dtype=np.float32)
    for where, values in parts:
        out[where] = values
    return out


def save_embeddings(path: str | Path, rows: np.ndarray, vectors: np.ndarray, meta: dict) -> None:
    """Vectors per score-table row, stored in `meta["dtype"]` (default float32)."""
    vectors = np.asarray(vectors, dtype=meta.get("dtype", "float32"))
    table = pa.table({"row": pa.array(np.asarray(rows, dtype=np.int64)), VECTOR: matrix_column(vectors)})
    write_parquet(table.replace_schema_metadata({"sftpick": json.dumps(meta, default=str)}), path)


def embeddings_meta(path: str | Path) -> dict:
    """A vectors file's metadata (what made it), without reading its vectors."""
    return json.loads((pq.read_schema(path).metadata or {}).get(b"sftpick", b"{}"))


def load_embeddings(path: str | Path, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows, vectors [n, d] float32, meta) as saved by `save_embeddings`: every row, or only
    those in `rows`, read `READ_BLOCK` rows at a time (memory: the vectors kept)."""
    wanted = None if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    found_rows, found_vectors = [], []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BLOCK, columns=["row", VECTOR]):
        batch_rows = batch.column(0).to_numpy()
        keep = slice(None) if wanted is None else np.isin(batch_rows, wanted)
        found_rows.append(batch_rows[keep])
        found_vectors.append(column_values(batch.column(1))[keep].astype(np.float32))
    meta = embeddings_meta(path)
    if not found_rows:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32), meta
    return np.concatenate(found_rows), np.concatenate(found_vectors), meta
