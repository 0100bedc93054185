"""Content-addressed score shards, so an interrupted run resumes without redoing work.

Each scorer configuration gets its own folder (named by a hash of `config()`); finished
shards are gathered and written as one Parquet file (to a temporary name, then renamed, so a
SIGKILL leaves whole files only) every `FLUSH_ROWS` rows or `FLUSH_SECONDS`, whichever comes
first: few, large files for fast scorers, little lost work for slow ones. Rows are keyed by
the example's content hash: duplicates are scored once, and a reordered or extended input
reuses what was done. Finished rows are read back as columns with a compact index of 16-byte
digests (`DigestIndex`), never as a Python object per row.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import DataError
from .writers import atomic_write, read_parquet, write_parquet

KEY = "content_hash"


def content_digest(keys) -> str:
    """One short hash of a set of content hashes (order does not matter): what a
    whole-dataset result or a vectors file was made from."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


FLUSH_ROWS = 8192
FLUSH_SECONDS = 5.0
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def digests(hex_hashes: list[str]) -> np.ndarray:
    """16-byte digests (numpy `S16`) of 32-digit hex content hashes, without a Python object each."""
    return _digests_of(np.frombuffer("".join(hex_hashes).encode("ascii"), dtype=np.uint8))


def _digests_of(hex_bytes: np.ndarray) -> np.ndarray:
    nibbles = _HEX[hex_bytes.reshape(-1, 32)]
    if (nibbles == 255).any():
        raise DataError("content hashes must be 32 lower-case hex digits")
    return np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).view("S16").ravel()


def hex_digests(keys: np.ndarray) -> list[str]:
    """The 32-digit hex content hashes of 16-byte digests (the inverse of `digests`)."""
    return [bytes(row).hex() for row in np.ascontiguousarray(keys).view(np.uint8).reshape(-1, 16)]


def column_digests(column: pa.ChunkedArray) -> np.ndarray:
    """`digests` of a string column of content hashes, read from its Arrow buffers."""
    parts = []
    for chunk in column.chunks:
        chunk = chunk.cast(pa.string())
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[chunk.offset: chunk.offset + len(chunk) + 1]
        if chunk.null_count or len(chunk) and not (np.diff(offsets) == 32).all():
            raise DataError("content hashes must be 32 lower-case hex digits")
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8) if len(chunk) else np.empty(0, np.uint8)
        parts.append(_digests_of(data[offsets[0]: offsets[-1]]))
    return np.concatenate(parts) if parts else np.empty(0, dtype="S16")


class DigestIndex:
    """Digest -> int64 value (a position), as two sorted numpy arrays: 24 bytes an entry."""

    def __init__(self, keys: np.ndarray | None = None, values: np.ndarray | None = None):
        keys = np.empty(0, dtype="S16") if keys is None else keys
        values = np.arange(len(keys), dtype=np.int64) if values is None else values
        order = np.argsort(keys, kind="stable")
        self.keys, self.values = keys[order], values[order]

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, -1 where absent."""
        if not len(self.keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.values[at], -1)

    def digest(self) -> str:
        """One short hash of the set of keys: what a whole-dataset result was made from."""
        return hashlib.sha256(self.keys.tobytes()).hexdigest()[:16]

    def keys_by_value(self) -> np.ndarray:
        """The keys ordered by their value (for positions 0..n-1: each position's key)."""
        keys = np.empty(len(self.keys), dtype="S16")
        keys[self.values] = self.keys
        return keys

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add keys that are not in the index yet (no input validation)."""
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(self.keys, keys[order])
        self.keys = np.insert(self.keys, at, keys[order])
        self.values = np.insert(self.values, at, values[order])


class ShardStore:
    def __init__(self, root: str | Path, name: str, config: dict):
        self.dir = Path(root) / f"{name}-{config_hash(config)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        config_file = self.dir / "config.json"
        if not config_file.exists():
            atomic_write(config_file, json.dumps(config, indent=2, sort_keys=True, default=str))
        self._pending: list[pa.Table] = []
        self._flushed = time.monotonic()

    def load(self) -> tuple[DigestIndex, pa.Table | None]:
        """Every finished row as one columnar table (None when there is none) and an index
        of its content hashes -> row of that table."""
        files = sorted(self.dir.glob("shard-*.parquet"))
        if not files:
            return DigestIndex(), None
        table = pa.concat_tables([read_parquet(f) for f in files], promote_options="default")
        return DigestIndex(column_digests(table.column(KEY))), table

    def save(self, keys: list[str], columns: dict[str, np.ndarray]) -> None:
        """Keep a finished shard; written with others once enough rows or seconds have gathered."""
        self._pending.append(pa.table({KEY: pa.array(keys, type=pa.string()),
                                       **{name: _arrow(values) for name, values in columns.items()}}))
        if sum(t.num_rows for t in self._pending) >= FLUSH_ROWS or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the shards kept so far as one file."""
        if self._pending:
            table = pa.concat_tables(self._pending, promote_options="default")
            write_parquet(table, self.dir / f"shard-{uuid.uuid4().hex}.parquet")
        self._pending, self._flushed = [], time.monotonic()


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
    return matrix_column(values) if values.ndim == 2 else pa.array(values)


def matrix_column(values: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-d array (one vector per row) as one Arrow column, in its own dtype."""
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def column_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: a vector column (fixed-size lists) as a 2-d array, in its stored dtype."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
        return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return column.to_numpy(zero_copy_only=False)
