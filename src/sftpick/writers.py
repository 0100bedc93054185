"""Writers: atomic writes (a killed run never leaves a half-written file, only a stale
temporary that the next writer under the same lock removes), a lock per output, Parquet
tables and the rejects file. A leaf: it imports only the errors (the subset, which reads
the input back, is io/rows.py)."""
from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from .errors import OutputLocked

TMP_SUFFIX = ".tmp"  # every temporary output file ends so, and starts with "."


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    with atomic_writer(path) as out:
        out.write(data.encode() if isinstance(data, str) else data)


@contextmanager
def atomic_writer(path: str | Path):
    """A binary handle on a temporary file beside `path`, renamed over it (after an fsync)
    when the block ends without an error, removed otherwise. The file gets the mode a plain
    `open` would (the user's umask), not the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(table, path: str | Path) -> None:
    """A pyarrow table to `path`, atomically (the one writer: fsync, the user's file mode)."""
    import pyarrow.parquet as pq

    with atomic_writer(path) as out:
        pq.write_table(table, out)


def read_parquet(path: str | Path):
    """One Parquet file as a pyarrow table, its metadata kept. Read as a single file, not through
    `pq.read_table`'s datasets layer, which imports pandas (0.3 s a process)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        return parquet.read()


def sibling(path: str | Path, suffix: str) -> Path:
    """`X.parquet` -> `X<suffix>` beside it (`.rejects.jsonl`, `.manifest.json`, …)."""
    path = Path(path)
    return path.with_name(path.stem + suffix)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def remove_stale_temps(folder: str | Path, name: str = "") -> int:
    """Delete the temporary files a killed writer of `name` (default: of anything) left in
    `folder`; call it under the output's lock, so no live writer's file goes. Returns how
    many were removed."""
    stale = list(Path(folder).glob(f".{glob.escape(name)}*{TMP_SUFFIX}")) if Path(folder).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


@contextmanager
def output_lock(lock_file: str | Path):
    """Hold an exclusive lock on `lock_file` while writing an output, so two runs never write
    one folder or file at once; a second one stops at once with a message naming the lock.
    The kernel drops the lock when its process dies, so a killed run never leaves it held."""
    import fcntl

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputLocked(f"{lock_file} is held by {holder}: another sftpick is writing this output; "
                               "wait for it to finish or choose another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"sftpick pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_rejects(rejects: Iterable, path: str | Path) -> None:
    """One JSON line per reject, written as they are read (a RejectLog is never in memory whole)."""
    with atomic_writer(path) as out:
        for reject in rejects:
            out.write(reject.to_json().encode("utf-8") + b"\n")
