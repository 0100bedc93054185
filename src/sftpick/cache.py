"""Content-addressed score shards, so an interrupted run resumes without redoing work.

Each scorer configuration gets its own folder (named by a hash of `config()`); each
finished batch becomes one Parquet file written to a temporary name and renamed, so a
SIGKILL leaves either a whole shard or none. Rows are keyed by the example's content hash:
duplicates are scored once, and a reordered or extended input reuses what was done.
"""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .writers import atomic_write, write_parquet

KEY = "content_hash"


def content_digest(keys) -> str:
    """One short hash of a set of content hashes (order does not matter): what a
    whole-dataset result or a vectors file was made from."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


class ShardStore:
    def __init__(self, root: str | Path, name: str, config: dict):
        self.dir = Path(root) / f"{name}-{config_hash(config)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "config.json"
        if not config_file.exists():
            atomic_write(config_file, json.dumps(config, indent=2, sort_keys=True, default=str))

    def load(self) -> dict[str, dict]:
        """Every finished row: content hash -> {column: value}."""
        done: dict[str, dict] = {}
        for shard in sorted(self.dir.glob("shard-*.parquet")):
            for record in pq.read_table(shard).to_pylist():
                done[record.pop(KEY)] = record
        return done

    def save(self, keys: list[str], columns: dict[str, np.ndarray]) -> None:
        table = pa.table({KEY: keys, **{name: _arrow(values) for name, values in columns.items()}})
        write_parquet(table, self.dir / f"shard-{uuid.uuid4().hex}.parquet")


class Journal:
    """Per-record results appended one JSON line each as they finish, beside a scorer's
    shards, for scorers whose records are slow or paid for one by one (the LLM judge): a
    killed or failed run loses only the requests in flight, not the rest of its shard. A
    line torn by a kill is skipped (that record is done again)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        """content hash -> {column: value} for every whole line."""
        if not self.path.exists():
            return {}
        text = self.path.read_text(encoding="utf-8", errors="replace")
        if text and not text.endswith("\n"):  # torn by a kill: end it, so the next line stands alone
            self._write("\n")
        done = {}
        for line in text.splitlines():
            try:
                record = json.loads(line)
                done[record.pop(KEY)] = record
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return done

    def append(self, key: str, values: dict) -> None:
        self._write(json.dumps({KEY: key, **values}, ensure_ascii=False) + "\n")

    def _write(self, text: str) -> None:
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(text)


def _arrow(values: np.ndarray) -> pa.Array:
    if values.dtype == object:
        return pa.array(list(values), type=pa.string())
    return pa.array(values)
