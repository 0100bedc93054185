"""Sentence embeddings of examples, shared by the kNN indicator and the diversity selectors.

Vectors are L2-normalised float32 (so inner product = cosine similarity) and stored next to
the scores as Parquet (`row` + a fixed-size list column, the model and text choice in the
schema metadata), so later selectors reuse them and no pickle is ever loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .examples import Example
from .models import DEFAULT_EMBEDDER, load_embedder
from .writers import sibling, write_parquet

EMBED_TEXTS = ("whole", "instruction", "prompt")
LM_PREFIX = "lm:"  # `lm:smollm2-135m`: a causal LM's mean-pooled last hidden state, not a sentence embedder


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
    raise ValueError(f"embed_text={what!r} is not one of {', '.join(EMBED_TEXTS)}")


def embed_texts(texts: list[str], *, model: str = DEFAULT_EMBEDDER, device: str = "auto",
                batch_size: int = 64, progress: bool = False) -> np.ndarray:
    if model.startswith(LM_PREFIX):
        return lm_hidden_states(texts, model[len(LM_PREFIX):], device=device)
    encoder = load_embedder(model, device=device)
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
    from .perplexity import micro_batches

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
                   device: str = "auto", batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """One normalised vector per example, in the order given."""
    return embed_texts([example_text(e, text) for e in examples], model=model, device=device,
                       batch_size=batch_size, progress=progress)


def embeddings_path(scores_path: str | Path) -> Path:
    """Where the embeddings of a score table live: `X.parquet` -> `X.embeddings.parquet`."""
    return sibling(scores_path, ".embeddings.parquet")


def save_embeddings(path: str | Path, rows: np.ndarray, vectors: np.ndarray, meta: dict) -> None:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    table = pa.table({"row": pa.array(np.asarray(rows, dtype=np.int64)), "vector": column})
    write_parquet(table.replace_schema_metadata({"sftpick": json.dumps(meta, default=str)}), path)


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows, vectors [n, d] float32, meta) as saved by `save_embeddings`."""
    table = pq.read_table(path)
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    meta = json.loads((table.schema.metadata or {}).get(b"sftpick", b"{}"))
    return table.column("row").to_numpy(), vectors, meta
