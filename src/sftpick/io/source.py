"""An input file read in chunks of records, never whole, and the two ways to read one at
once: `read_dataset` (every record in memory, for small files) and `scan_dataset` (kind,
format and SHA-256, no record read)."""
from __future__ import annotations

import codecs
import hashlib
import itertools
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InvalidRecord, UnreadableInput
from ..examples import Example, to_example
from ..writers import file_sha256
from . import records
from .detect import DETECT_WINDOW, resolve_format
from .json_array import json_array_items
from .jsonl import jsonl_item, jsonl_items, jsonl_lines, jsonl_parts, range_blocks
from .parquet import parquet_items
from .records import Chunk, Dataset, Item, Part, Reject

KINDS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
CHUNK_RECORDS = 10_000  # records per chunk: memory holds one chunk of Examples, never the whole input
PART_BYTES = 8 << 20  # of a JSONL file per part read by a worker (engine ray)


class Source:
    """An input file read in chunks of Examples and Rejects, never whole. The format is
    resolved from the first records when it is opened; `sha256` and `n_records` are known
    once `chunks()` has run to the end. One bad record never stops the read (unless
    `strict`); a file that cannot be read as a whole (wrong type, broken JSON array, no
    known format) raises UnreadableInput or UnknownFormat."""

    def __init__(self, path: str | Path, fmt: str | None = None, *, strict: bool = False):
        self.path = Path(path)
        self.kind = KINDS.get(self.path.suffix.lower())
        if self.kind is None:
            raise UnreadableInput(f"{self.path}: unsupported file type {self.path.suffix!r}; "
                                  "expected .json, .jsonl or .parquet")
        if not self.path.is_file():
            raise UnreadableInput(f"{self.path}: no such file")
        self.strict = strict
        self.sha256: str | None = None
        self.n_records: int | None = None
        window = list(itertools.islice(items_of(self.path, self.kind), DETECT_WINDOW))
        self.format = resolve_format(self.path, self.kind, window, fmt)

    def chunks(self, size: int = CHUNK_RECORDS) -> Iterator[Chunk]:
        """The records, `size` at a time, in file order."""
        digest = hashlib.sha256()
        yield from self.regroup([self.records(items_of(self.path, self.kind, digest))], size)
        self.sha256 = digest.hexdigest() if self.kind != "parquet" else file_sha256(self.path)

    def records(self, items: Iterable[Item]) -> Iterator[Example | Reject]:
        """Each item as an Example or a Reject, rows numbered from 0 (`regroup` shifts them)."""
        for row, (line, value, text, error) in enumerate(items):
            try:
                if error:
                    raise InvalidRecord(error)
                example = to_example(value, row, self.format)
                example.line = line
                yield example
            except InvalidRecord as reason:
                yield Reject(str(self.path), row, line, "read", str(reason), text if error else value)

    def regroup(self, parts: Iterable[Iterable[Example | Reject]], size: int) -> Iterator[Chunk]:
        """Consecutive parts of the file, each with rows numbered from 0, as chunks of `size`
        records with rows numbered through the file; sets `n_records` at the end."""
        chunk, offset = Chunk([], []), 0
        for part in parts:
            count = 0
            for count, record in enumerate(part, 1):
                record.row += offset
                if isinstance(record, Example):
                    chunk.examples.append(record)
                elif self.strict:
                    where = f"line {record.line}" if record.line else f"row {record.row}"
                    raise InvalidRecord(f"{self.path}, {where}: {record.reason} "
                                        "(--strict stops at the first bad record)")
                else:
                    chunk.rejects.append(record)
                if len(chunk.examples) + len(chunk.rejects) >= size:
                    yield chunk
                    chunk = Chunk([], [])
            offset += count
        if chunk.examples or chunk.rejects:
            yield chunk
        self.n_records = offset

    def parts(self, part_bytes: int | None = None) -> list[Part] | None:
        """Pieces of the file that a worker reads alone (`read_part`), in file order: about
        `part_bytes` of whole lines of a JSONL file, or one row group of a Parquet file; sets
        `sha256`. None for a JSON array, whose records can only be found by walking it."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            self.sha256 = file_sha256(self.path)
            return [Part(group, group + 1, 0) for group in range(pq.ParquetFile(self.path).num_row_groups)]
        if self.kind == "json":
            return None
        digest = hashlib.sha256()
        parts = jsonl_parts(self.path, part_bytes or PART_BYTES, digest)
        self.sha256 = digest.hexdigest()
        return parts

    def read_part(self, part: Part) -> list[Example | Reject]:
        """A part's records, rows numbered from 0 within it."""
        if self.kind == "parquet":
            return list(self.records(parquet_items(self.path, list(range(part.start, part.end)))))
        with open(self.path, "rb") as handle:
            handle.seek(part.start)
            blocks = range_blocks(handle, part.end - part.start)
            lines = jsonl_lines(blocks, shape=False, first_line=part.first_line)
            return list(self.records(jsonl_item(number, line) for number, line in lines))

    def estimate(self) -> int | None:
        """About how many records the file holds, without parsing it (for progress): lines of
        a JSONL file (blank ones included), rows of a Parquet file; None for a JSON array."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.kind == "json":
            return None
        lines, last = 0, b"\n"
        with open(self.path, "rb") as handle:
            while block := handle.read(records.BLOCK):
                lines, last = lines + block.count(b"\n"), block[-1:]
        return lines + (last != b"\n")

    def dataset(self, examples: list[Example] | None, rejects: list[Reject] | None) -> Dataset:
        """What was read, once `chunks()` has run to the end."""
        if self.sha256 is None:
            raise RuntimeError("Source.dataset() before the records were read")
        return Dataset(self.path, self.kind, self.format, self.sha256, self.n_records, examples, rejects)


def read_dataset(path: str | Path, fmt: str | None = None, *, strict: bool = False) -> Dataset:
    """Every record in memory (for eval sets, selectors and small files; a large input is
    read with `Source`): valid ones become Examples, the others Rejects with file, line and
    reason."""
    source = Source(path, fmt, strict=strict)
    examples, rejects = [], []
    for chunk in source.chunks():
        examples += chunk.examples
        rejects += chunk.rejects
    return source.dataset(examples, rejects)


def scan_dataset(path: str | Path, fmt: str | None = None) -> Dataset:
    """A file's kind, format and SHA-256, with no record read past the format check: enough to
    vouch that it is the file some scores were computed from and to write a subset from it
    (its records are read only if they must be matched to the scores by content)."""
    source = Source(path, fmt)
    return Dataset(source.path, source.kind, source.format, file_sha256(source.path), None, None, None)


def items_of(path: Path, kind: str, digest=None) -> Iterator[Item]:
    """Every record of the file as an Item, read as it goes; `digest` (a hashlib object), when
    given, is fed every byte of a JSON/JSONL file."""
    if kind == "parquet":
        yield from parquet_items(path)
        return
    with open(path, "rb") as handle:
        blocks = file_blocks(path, handle, digest)
        yield from jsonl_items(path, blocks) if kind == "jsonl" else json_array_items(path, blocks)


def file_blocks(path: Path, handle, digest) -> Iterator[bytes]:
    """The file's bytes in blocks, without a UTF-8 byte-order mark; UTF-16/32 text is a
    file-level error (every line would be rejected as not UTF-8)."""
    first = handle.read(records.BLOCK)
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if first.startswith(bom):
            raise UnreadableInput(f"{path}: the file is {name} text (it starts with a {name} byte-order mark); "
                                  "expected UTF-8, save it as UTF-8")
    block = first
    while block:
        if digest is not None:
            digest.update(block)
        yield block.removeprefix(codecs.BOM_UTF8) if block is first else block
        block = handle.read(records.BLOCK)
