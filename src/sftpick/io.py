"""Readers and writers: JSON arrays, JSONL and Parquet in; the subset out in the input's own
format (records byte-for-byte as they came for JSON/JSONL), rejects with their reasons, and
atomic writes so an interrupted run never leaves a half-written file."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .examples import Example, InvalidRecord, UnknownFormat, detect_format, to_example

KINDS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
_DETECT_WINDOW = 100  # records looked at to detect the format
TMP_SUFFIX = ".tmp"  # every temporary output file ends so, and starts with "."


class UnreadableInput(RuntimeError):
    """The file as a whole cannot be read (missing, wrong extension, broken JSON array)."""


@dataclass
class Reject:
    file: str
    row: int
    line: int | None
    stage: str  # "read" or the name of the scorer that refused it
    reason: str
    record: Any = None  # the parsed record, or its raw text when it is not valid JSON

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)


@dataclass
class Dataset:
    path: Path
    kind: str
    format: str
    sha256: str
    n_records: int
    examples: list[Example]
    rejects: list[Reject]
    raw: list[str] | None = field(default=None, repr=False)  # each record's own text (JSON/JSONL)


def read_dataset(path: str | Path, fmt: str | None = None, *, strict: bool = False) -> Dataset:
    """Read every record; valid ones become Examples, the others Rejects with file, line and reason."""
    path = Path(path)
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        raise UnreadableInput(f"{path}: unsupported file type {path.suffix!r}; expected .json, .jsonl or .parquet")
    if not path.is_file():
        raise UnreadableInput(f"{path}: no such file")
    data = path.read_bytes()
    if kind == "parquet":
        items, raw = _parquet_items(path), None
    else:
        text = _decode(path, data)
        items = list(_jsonl_items(text) if kind == "jsonl" else _json_array_items(path, text))
        raw = [item[2] for item in items]
    fmt = fmt or _detect(path, items)
    examples, rejects = [], []
    for row, (line, value, text, error) in enumerate(items):
        try:
            if error:
                raise InvalidRecord(error)
            example = to_example(value, row, fmt)
            example.line = line
            examples.append(example)
        except InvalidRecord as reason:
            reject = Reject(str(path), row, line, "read", str(reason), text if error else value)
            if strict:
                where = f"line {line}" if line else f"row {row}"
                raise InvalidRecord(f"{path}, {where}: {reason} (--strict stops at the first bad record)")
            rejects.append(reject)
    return Dataset(path, kind, fmt, hashlib.sha256(data).hexdigest(), len(items), examples, rejects, raw)


Item = tuple[int | None, Any, str, str | None]  # (line, parsed value, raw text, parse error)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableInput(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _jsonl_items(text: str) -> Iterator[Item]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), line, None
        except json.JSONDecodeError as error:
            yield number, None, line, f"invalid JSON: {error.msg} at column {error.colno}"


def _json_array_items(path: Path, text: str) -> Iterator[Item]:
    """Walk a JSON array element by element, keeping each element's line and raw text."""
    decoder = json.JSONDecoder()
    pos, line = _skip_space(text, 0), 1
    if not text.startswith("[", pos):
        raise UnreadableInput(f"{path}: a .json file must hold an array of records (use .jsonl for one record per line)")
    pos = _skip_space(text, pos + 1)
    newlines_before = 0
    counted_to = 0
    while not text.startswith("]", pos):
        newlines_before += text.count("\n", counted_to, pos)
        counted_to = pos
        line = newlines_before + 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            raise UnreadableInput(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
        yield line, value, text[pos:end], None
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif not text.startswith("]", pos):
            lineno = text.count("\n", 0, pos) + 1
            raise UnreadableInput(f"{path}: invalid JSON at line {lineno}: expected ',' or ']' after a record")
    if text[pos + 1:].strip():
        raise UnreadableInput(f"{path}: extra data after the JSON array")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _parquet_items(path: Path) -> list[Item]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise UnreadableInput(f"{path}: cannot read Parquet ({error})") from None
    return [(None, record, "", None) for record in table.to_pylist()]


def _detect(path: Path, items: list[Item]) -> str:
    candidates = [value for _, value, _, error in items[:_DETECT_WINDOW] if not error]
    if not candidates:
        raise UnknownFormat(f"{path}: no readable record to detect the format from")
    errors = []
    for value in candidates:
        try:
            return detect_format(value)
        except UnknownFormat as error:
            errors.append(str(error))
    raise UnknownFormat(f"{path}: unknown format: {errors[0]}; pass --format to choose one")


# ---------------------------------------------------------------- writing

def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it. The file gets the
    mode a plain `open` would (the user's umask), not the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(table, path: str | Path) -> None:
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


class OutputLocked(RuntimeError):
    """Another process is writing the same output."""


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


def write_subset(dataset: Dataset, rows: Iterable[int], path: str | Path) -> None:
    """Write the chosen records, in input order, in the input's own format."""
    rows = np.sort(np.asarray(list(rows), dtype=np.int64))
    if dataset.kind == "parquet":
        import pyarrow.parquet as pq

        write_parquet(pq.read_table(dataset.path).take(rows), path)
        return
    texts = [dataset.raw[row] for row in rows]
    if dataset.kind == "jsonl":
        atomic_write(path, "".join(text + "\n" for text in texts))
    else:
        atomic_write(path, "[\n" + ",\n".join(texts) + "\n]\n" if texts else "[]\n")


def write_rejects(rejects: Iterable[Reject], path: str | Path) -> None:
    atomic_write(path, "".join(reject.to_json() + "\n" for reject in rejects))
