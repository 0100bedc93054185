"""Readers: JSON arrays, JSONL and Parquet in, every record either an Example or a Reject with
its file, line/row and reason (writers.py writes the outputs)."""
from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .examples import FORMAT_NAMES, FORMATS, Example, InvalidRecord, UnknownFormat, formats_of, to_example

KINDS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
_DETECT_WINDOW = 100  # records looked at to detect the format
MAX_DEPTH = 100  # nesting levels a record may have (real records nest a handful)
EXPECTED_FIELDS = ("Alpaca (instruction/input/output), ShareGPT (conversations with from/value) "
                   "or OpenAI (messages with role/content)")
_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


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
        """One JSON line, readable as UTF-8; a record holding a lone surrogate (it was rejected for
        that) is written with \\u escapes, since UTF-8 cannot encode it."""
        text = json.dumps(asdict(self), ensure_ascii=False, default=str)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(asdict(self), default=str)
        return text


class RejectLog:
    """Rejects kept on disk as they come (a temporary file, removed with the log), not in
    memory, so a run over 10M records with many bad ones holds none of their records:
    counted, iterated in the order added (read back one at a time), copied to the rejects
    file at the end."""

    def __init__(self):
        self.file = tempfile.NamedTemporaryFile(prefix="sftpick-rejects-", suffix=".jsonl")
        self.count = 0

    def add(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            self.file.write(reject.to_json().encode("utf-8") + b"\n")
            self.count += 1
        self.file.flush()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Reject]:
        with open(self.file.name, "rb") as lines:  # its own position: iterations do not disturb each other
            for line in lines:
                yield Reject(**json.loads(line))


@dataclass
class Dataset:
    path: Path
    kind: str
    format: str
    sha256: str
    n_records: int | None  # None: not counted (`scan_dataset`)
    examples: list[Example] | None  # None: not held in memory (a streamed input: see `Source`)
    rejects: list[Reject] | None  # None: not held in memory (a scored input: its ScoreResult's RejectLog)


@dataclass
class Chunk:
    examples: list[Example]
    rejects: list[Reject]


@dataclass(frozen=True)
class Part:
    """A piece of an input file that a worker reads alone: bytes [start, end) of a JSONL file
    (whole lines, the first numbered `first_line`), or row groups [start, end) of a Parquet file."""
    start: int
    end: int
    first_line: int


CHUNK_RECORDS = 10_000  # records per chunk: memory holds one chunk of Examples, never the whole input
PART_BYTES = 8 << 20  # of a JSONL file per part read by a worker (engine ray)
MAX_RECORD_BYTES = 256 << 20  # a JSON array element longer than this is damage; reading stops there
_BLOCK = 1 << 20  # bytes read at a time


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
        window = list(itertools.islice(items_of(self.path, self.kind), _DETECT_WINDOW))
        self.format = _resolve_format(self.path, self.kind, window, fmt)

    def chunks(self, size: int = CHUNK_RECORDS) -> Iterator[Chunk]:
        """The records, `size` at a time, in file order."""
        digest = hashlib.sha256()
        yield from self.regroup([self.records(items_of(self.path, self.kind, digest))], size)
        self.sha256 = digest.hexdigest() if self.kind != "parquet" else _file_sha256(self.path)

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

            self.sha256 = _file_sha256(self.path)
            return [Part(group, group + 1, 0) for group in range(pq.ParquetFile(self.path).num_row_groups)]
        if self.kind == "json":
            return None
        digest = hashlib.sha256()
        parts = _jsonl_parts(self.path, part_bytes or PART_BYTES, digest)
        self.sha256 = digest.hexdigest()
        return parts

    def read_part(self, part: Part) -> list[Example | Reject]:
        """A part's records, rows numbered from 0 within it."""
        if self.kind == "parquet":
            return list(self.records(_parquet_items(self.path, list(range(part.start, part.end)))))
        with open(self.path, "rb") as handle:
            handle.seek(part.start)
            blocks = _range_blocks(handle, part.end - part.start)
            lines = _jsonl_lines(blocks, shape=False, first_line=part.first_line)
            return list(self.records(_jsonl_item(number, line) for number, line in lines))

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
            while block := handle.read(_BLOCK):
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
    return Dataset(source.path, source.kind, source.format, _file_sha256(source.path), None, None, None)


Item = tuple[int | None, Any, str, str | None]  # (line, parsed value, raw text, parse error)


def items_of(path: Path, kind: str, digest=None) -> Iterator[Item]:
    """Every record of the file as an Item, read as it goes; `digest` (a hashlib object), when
    given, is fed every byte of a JSON/JSONL file."""
    if kind == "parquet":
        yield from _parquet_items(path)
        return
    with open(path, "rb") as handle:
        blocks = _blocks(path, handle, digest)
        yield from _jsonl_items(path, blocks) if kind == "jsonl" else _json_array_items(path, blocks)


def raw_texts(path: Path, kind: str, rows: np.ndarray) -> dict[int, str]:
    """Row -> the record's own text (as written to a JSON/JSONL subset), for `rows` only."""
    wanted = set(np.asarray(rows).tolist())
    texts = {}
    if kind == "jsonl":
        with open(path, "rb") as handle:
            for row, (_, line) in enumerate(_jsonl_lines(_blocks(path, handle, None), shape=False)):
                if row in wanted:
                    texts[row] = line.decode("utf-8")
        return texts
    for row, (_, _, text, _) in enumerate(items_of(path, kind)):
        if row in wanted:
            texts[row] = text
    return texts


def _file_sha256(path: Path) -> str:
    from .writers import file_sha256  # writers imports this module

    return file_sha256(path)


def _blocks(path: Path, handle, digest) -> Iterator[bytes]:
    """The file's bytes in blocks, without a UTF-8 byte-order mark; UTF-16/32 text is a
    file-level error (every line would be rejected as not UTF-8)."""
    first = handle.read(_BLOCK)
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
        block = handle.read(_BLOCK)


# ---------------------------------------------------------------- JSONL

def _jsonl_items(path: Path, blocks: Iterator[bytes]) -> Iterator[Item]:
    """One item per non-blank line. Lines are split and decoded one by one, so a line that is
    not UTF-8 is one reject, not a lost file."""
    for number, line in _jsonl_lines(blocks):
        if number is not None:
            yield _jsonl_item(number, line)
        else:
            _check_jsonl_shape(path, *line)


def _jsonl_lines(blocks: Iterator[bytes], *, shape: bool = True,
                 first_line: int = 1) -> Iterator[tuple[int | None, bytes]]:
    """(line number, line) for each non-blank line, read block by block, the first numbered
    `first_line`; CRLF endings and a BOM on a line (files joined with `cat`) are dropped. With
    `shape`, the first non-blank line is also given once as (None, (number, line)) before it,
    for the file-level shape check."""
    number, rest, first = first_line - 1, b"", shape
    for block in itertools.chain(blocks, [b"\n"]):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            line = line.removesuffix(b"\r").removeprefix(codecs.BOM_UTF8)
            if line.strip():
                if first:
                    yield None, (number, line)
                    first = False
                yield number, line


def _jsonl_item(number: int, line: bytes) -> Item:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return (number, None, line.decode("utf-8", "backslashreplace"),
                f"not valid UTF-8: byte {error.start + 1} of the line ({error.reason})")
    if "\x00" in text:
        return (number, None, text.replace("\x00", "\\x00"),
                f"text holds a NUL character: a NUL byte at column {text.index(chr(0)) + 1}")
    value, error = _parse_json(text)
    if isinstance(value, list):
        value, error = None, f"a JSON array on one line ({len(value)} items); expected one record, a JSON object"
    return number, value, text, error


def _parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None), or (None, the reason a person reads) for a line that is not one JSON value."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if not text.lstrip().startswith(("{", "[")):
            return None, f"not JSON: the line starts with {text.strip()[:30]!r}"  # CSV, YAML, prose…
        if error.msg == "Extra data":
            return None, _extra_data_reason(text, error.pos)
        return None, f"invalid JSON: {error.msg} at column {error.colno}"
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    except ValueError as error:  # json raises a plain ValueError for an over-long integer
        return None, f"invalid JSON: {str(error).split(':')[0]}"
    if _deeper_than(value, MAX_DEPTH, text):
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, None


def _extra_data_reason(text: str, pos: int) -> str:
    try:
        json.JSONDecoder().raw_decode(text, pos)
    except (ValueError, RecursionError):
        return f"text after the record (column {pos + 1}): {text[pos:pos + 30]!r}"
    return f"two JSON values on one line (the second starts at column {pos + 1}); JSON Lines holds one record per line"


def _deeper_than(value: Any, limit: int, text: str) -> bool:
    """True when `value` nests more than `limit` levels: writers and Python's json recurse once
    per level, so a record this deep is damage that would crash them later, not data."""
    if text.count("[") + text.count("{") <= limit:  # cheap: most records cannot be that deep
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _check_jsonl_shape(path: Path, number: int, first: bytes) -> None:
    """A JSON array (pretty-printed, or whole on line 1) or a pretty-printed object saved as
    .jsonl is one clear error, not a reject per line (`first`: the first non-blank line)."""
    first = first.strip()
    if first == b"[" or (first.startswith(b"[") and first.endswith(b",")):
        raise UnreadableInput(f"{path}: looks like a JSON array spread over many lines (line {number} opens it "
                              "with '['), not JSON Lines (one record per line); rename the file to .json")
    if first == b"{":
        raise UnreadableInput(f"{path}: looks like pretty-printed JSON (line {number} is '{{' alone), not JSON Lines; "
                              "expected one whole record per line")
    if first.startswith(b"[") and isinstance(_parse_json(first.decode("utf-8", "replace"))[0], list):
        raise UnreadableInput(f"{path}: line {number} holds a JSON array, not one record; expected JSON Lines, "
                              "one JSON object per line (a file that is one array should be named .json)")


def _jsonl_parts(path: Path, part_bytes: int, digest) -> list[Part]:
    """Parts of about `part_bytes`, each ending after a newline, with the number of its first
    line; one pass over the file, which also feeds `digest`."""
    parts, start, first_line, pos, newlines = [], 0, 1, 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            counted = 0  # the newlines of block[:counted] are in `newlines`
            while (cut := block.find(b"\n", max(start + part_bytes - pos, counted))) >= 0:
                newlines += block.count(b"\n", counted, cut + 1)
                parts.append(Part(start, pos + cut + 1, first_line))
                start, first_line, counted = pos + cut + 1, newlines + 1, cut + 1
            newlines += block.count(b"\n", counted)
            pos += len(block)
    if pos > start:
        parts.append(Part(start, pos, first_line))
    return parts


def _range_blocks(handle, length: int) -> Iterator[bytes]:
    while length > 0 and (block := handle.read(min(_BLOCK, length))):
        length -= len(block)
        yield block


# ---------------------------------------------------------------- JSON array

class _ArrayText:
    """The text of a JSON array read block by block: bytes that are not UTF-8 are carried as
    surrogate escapes (an incremental decoder, so a character split between blocks is whole),
    and text before the current record is dropped as the walk moves on, keeping its line count."""

    def __init__(self, blocks: Iterator[bytes]):
        self.blocks = blocks
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text, self.pos, self.eof = "", 0, False
        self.lines_before = 0  # newlines in the text dropped so far
        self.counted_to, self.newlines = 0, 0  # newlines in text[:counted_to]

    def more(self) -> bool:
        """Read one more block; False at the end of the file."""
        if self.eof:
            return False
        if self.pos > _BLOCK:  # drop what was walked past; keep the line count
            self.line()
            self.lines_before += self.newlines
            self.text, self.counted_to, self.newlines = self.text[self.pos:], 0, 0
            self.pos = 0
        block = next(self.blocks, None)
        self.eof = block is None
        self.text += self.decoder.decode(block or b"", final=self.eof)
        return True

    def skip_space(self) -> None:
        while True:
            self.pos = _skip_space(self.text, self.pos)
            if self.pos < len(self.text) or not self.more():
                return

    def line(self) -> int:
        """1-based line of the current position."""
        self.newlines += self.text.count("\n", self.counted_to, self.pos)
        self.counted_to = self.pos
        return self.lines_before + self.newlines + 1


def _json_array_items(path: Path, blocks: Iterator[bytes]) -> Iterator[Item]:
    """Walk a JSON array element by element, reading as it goes and keeping each element's
    line and raw text. Bytes that are not UTF-8 reject only their element."""
    text = _ArrayText(blocks)
    text.skip_space()
    if not text.text.startswith("[", text.pos):
        raise UnreadableInput(f"{path}: a .json file must hold an array of records (use .jsonl for one record per line)")
    text.pos += 1
    text.skip_space()
    while not text.text.startswith("]", text.pos):
        line = text.line()
        value, end = _next_value(path, text, line)
        yield _json_array_item(line, value, text.text[text.pos:end])
        text.pos = end
        text.skip_space()
        if text.text.startswith(",", text.pos):
            text.pos += 1
            text.skip_space()
        elif text.pos >= len(text.text):
            raise UnreadableInput(f"{path}: the file ends before the array's closing ']' (cut short?)")
        elif not text.text.startswith("]", text.pos):
            raise UnreadableInput(f"{path}: invalid JSON at line {text.line()}: expected ',' or ']' after a record")
    text.pos += 1
    while text.more():
        pass
    if text.text[text.pos:].strip():
        raise UnreadableInput(f"{path}: extra data after the JSON array")


def _next_value(path: Path, text: _ArrayText, line: int) -> tuple[Any, int]:
    """The value at the current position and where it ends, reading more blocks while it is
    cut short by the end of the text read so far (a value must be followed by a character,
    so a number is never cut)."""
    decoder = json.JSONDecoder()
    while True:
        try:
            value, end = decoder.raw_decode(text.text, text.pos)
            if end < len(text.text) or text.eof:
                return value, end
        except json.JSONDecodeError as error:
            if text.eof:
                raise UnreadableInput(_broken_array(path, text.text, error, text.lines_before)) from None
        except RecursionError:
            raise UnreadableInput(f"{path}: the record at line {line} is nested deeper than the JSON reader allows; "
                                  "expected records of plain objects, lists and strings") from None
        if len(text.text) - text.pos > MAX_RECORD_BYTES:
            raise UnreadableInput(f"{path}: the record at line {line} is longer than {MAX_RECORD_BYTES >> 20} MiB "
                                  "(or the array is broken there); expected records of at most that size")
        text.more()


def _json_array_item(line: int, value: Any, raw: str) -> Item:
    bad = _SURROGATE_ESCAPE.search(raw)
    if bad:
        byte = len(raw[:bad.start()].encode("utf-8", "surrogateescape")) + 1
        shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return line, None, shown, f"not valid UTF-8: byte {byte} of the record"
    if _deeper_than(value, MAX_DEPTH, raw):
        return line, None, raw, f"nested deeper than {MAX_DEPTH} levels"
    return line, value, raw, None


def _broken_array(path: Path, text: str, error: json.JSONDecodeError, lines_before: int = 0) -> str:
    """One line for a JSON array that cannot be read on: its elements have no line of their own to resync on."""
    if error.pos >= len(text):
        return f"{path}: the file ends before the array's closing ']' (cut short?)"
    if _SURROGATE_ESCAPE.match(text, error.pos):
        what = "a byte that is not UTF-8"
    elif text.startswith("\x00", error.pos):
        what = "a NUL byte"
    else:
        what = error.msg.removesuffix(" at")  # json says "Invalid control character at"
    return (f"{path}: invalid JSON at line {lines_before + error.lineno}, column {error.colno}: {what}; the array cannot be read "
            "past this point (expected a record, then ',' or ']')")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# ---------------------------------------------------------------- Parquet

def _parquet_items(path: Path, row_groups: list[int] | None = None) -> Iterator[Item]:
    """Record by record (of `row_groups` only, when given), one batch of rows in memory at a time."""
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096, row_groups=row_groups)
        for batch in batches:
            try:
                rows = [(record, None) for record in batch.to_pylist()]
            except UnicodeDecodeError:  # Parquet string columns are not checked for UTF-8 when written
                rows = [_parquet_row(batch, i) for i in range(batch.num_rows)]
            yield from ((None, record, "", error) for record, error in rows)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise UnreadableInput(f"{path}: cannot read Parquet ({error})") from None


def _parquet_row(batch, i: int) -> tuple[dict | None, str | None]:
    record = {}
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            record[name] = column[i].as_py()
        except UnicodeDecodeError as error:
            return None, f"not valid UTF-8: column {name!r} ({error.reason} at byte {error.start + 1})"
    return record, None


# ---------------------------------------------------------------- format

def _resolve_format(path: Path, kind: str, items: list[Item], fmt: str | None) -> str:
    """The records' format: detected from the first readable records, or `fmt` when some of
    them fit it (a forced format that fits none would reject every record: a file-level error)."""
    if fmt is not None and fmt not in FORMATS:
        raise UnknownFormat(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    window = items[:_DETECT_WINDOW]
    values = [value for _, value, _, error in window if not error]
    found = next((fits[0] for fits in map(formats_of, values) if fits), None)
    if fmt is not None:
        if not values or any(fmt in formats_of(value) for value in values):
            return fmt
        looks = FORMAT_NAMES[found].split()[-1] if found else _describe(kind, values)
        raise UnknownFormat(f"--format {fmt} does not match {path}: its records look like {looks}")
    if found:
        return found
    if not window:
        raise UnknownFormat(f"{path}: the file holds no records; expected {EXPECTED_FIELDS} records")
    if not values:
        line, _, _, error = window[0]
        raise UnknownFormat(f"{path}: none of the first {len(window)} records can be read (line {line}: {error}); "
                            f"expected JSON objects, {EXPECTED_FIELDS}")
    raise UnknownFormat(f"{path}: unknown format: {_describe(kind, values)}; expected {EXPECTED_FIELDS}; "
                        "pass --format to choose one")


def _describe(kind: str, values: list) -> str:
    """What the first readable record is, for an error that says why no format fits."""
    first = values[0]
    if not isinstance(first, dict):
        return f"the records are {type(first).__name__}s, not JSON objects"
    fields = ", ".join(sorted(map(str, first))[:12]) or "none"
    return f"its columns are {fields}" if kind == "parquet" else f"the first record has fields {fields}"
