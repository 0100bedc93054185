"""Readers: JSON arrays, JSONL and Parquet in, every record either an Example or a Reject with
its file, line/row and reason (writers.py writes the outputs)."""
from __future__ import annotations

import codecs
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

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
    """Read every record; valid ones become Examples, the others Rejects with file, line and reason.
    One bad record never stops the read (unless `strict`); only a file that cannot be read as a
    whole (wrong type, broken JSON array, no known format) raises."""
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
        body = _without_bom(path, data)
        items = list(_jsonl_items(path, body) if kind == "jsonl" else _json_array_items(path, body))
        raw = [item[2] for item in items]
    fmt = _resolve_format(path, kind, items, fmt)
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


def _without_bom(path: Path, data: bytes) -> bytes:
    """`data` without a UTF-8 byte-order mark; UTF-16/32 text is a file-level error (every
    line would be rejected as not UTF-8)."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise UnreadableInput(f"{path}: the file is {name} text (it starts with a {name} byte-order mark); "
                                  "expected UTF-8, save it as UTF-8")
    return data.removeprefix(codecs.BOM_UTF8)


# ---------------------------------------------------------------- JSONL

def _jsonl_items(path: Path, data: bytes) -> Iterator[Item]:
    """One item per non-blank line. Lines are split and decoded one by one, so a line that is
    not UTF-8 is one reject, not a lost file; CRLF endings and a BOM on a line (files joined
    with `cat`) are dropped."""
    lines = data.split(b"\n")
    _check_jsonl_shape(path, lines)
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix(b"\r").removeprefix(codecs.BOM_UTF8)
        if line.strip():
            yield _jsonl_item(number, line)


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


def _check_jsonl_shape(path: Path, lines: list[bytes]) -> None:
    """A JSON array (pretty-printed, or whole on line 1) or a pretty-printed object saved as
    .jsonl is one clear error, not a reject per line."""
    number, first = next(((n, line.strip().removeprefix(codecs.BOM_UTF8)) for n, line in enumerate(lines, 1)
                          if line.strip()), (0, b""))
    if first == b"[" or (first.startswith(b"[") and first.endswith(b",")):
        raise UnreadableInput(f"{path}: looks like a JSON array spread over many lines (line {number} opens it "
                              "with '['), not JSON Lines (one record per line); rename the file to .json")
    if first == b"{":
        raise UnreadableInput(f"{path}: looks like pretty-printed JSON (line {number} is '{{' alone), not JSON Lines; "
                              "expected one whole record per line")
    if first.startswith(b"[") and isinstance(_parse_json(first.decode("utf-8", "replace"))[0], list):
        raise UnreadableInput(f"{path}: line {number} holds a JSON array, not one record; expected JSON Lines, "
                              "one JSON object per line (a file that is one array should be named .json)")


# ---------------------------------------------------------------- JSON array

def _json_array_items(path: Path, data: bytes) -> Iterator[Item]:
    """Walk a JSON array element by element, keeping each element's line and raw text. Bytes
    that are not UTF-8 are carried as surrogate escapes, so they reject only their element."""
    text = data.decode("utf-8", "surrogateescape")
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
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
            raise UnreadableInput(_broken_array(path, text, error)) from None
        except RecursionError:
            raise UnreadableInput(f"{path}: the record at line {line} is nested deeper than the JSON reader allows; "
                                  "expected records of plain objects, lists and strings") from None
        yield _json_array_item(line, value, text[pos:end])
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif pos >= len(text):
            raise UnreadableInput(f"{path}: the file ends before the array's closing ']' (cut short?)")
        elif not text.startswith("]", pos):
            lineno = text.count("\n", 0, pos) + 1
            raise UnreadableInput(f"{path}: invalid JSON at line {lineno}: expected ',' or ']' after a record")
    if text[pos + 1:].strip():
        raise UnreadableInput(f"{path}: extra data after the JSON array")


def _json_array_item(line: int, value: Any, raw: str) -> Item:
    bad = _SURROGATE_ESCAPE.search(raw)
    if bad:
        byte = len(raw[:bad.start()].encode("utf-8", "surrogateescape")) + 1
        shown = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return line, None, shown, f"not valid UTF-8: byte {byte} of the record"
    if _deeper_than(value, MAX_DEPTH, raw):
        return line, None, raw, f"nested deeper than {MAX_DEPTH} levels"
    return line, value, raw, None


def _broken_array(path: Path, text: str, error: json.JSONDecodeError) -> str:
    """One line for a JSON array that cannot be read on: its elements have no line of their own to resync on."""
    if error.pos >= len(text):
        return f"{path}: the file ends before the array's closing ']' (cut short?)"
    if _SURROGATE_ESCAPE.match(text, error.pos):
        what = "a byte that is not UTF-8"
    elif text.startswith("\x00", error.pos):
        what = "a NUL byte"
    else:
        what = error.msg.removesuffix(" at")  # json says "Invalid control character at"
    return (f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {what}; the array cannot be read "
            "past this point (expected a record, then ',' or ']')")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# ---------------------------------------------------------------- Parquet

def _parquet_items(path: Path) -> list[Item]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise UnreadableInput(f"{path}: cannot read Parquet ({error})") from None
    items = []
    for batch in table.to_batches(max_chunksize=4096):
        try:
            rows = [(record, None) for record in batch.to_pylist()]
        except UnicodeDecodeError:  # Parquet string columns are not checked for UTF-8 when written
            rows = [_parquet_row(batch, i) for i in range(batch.num_rows)]
        items.extend((None, record, "", error) for record, error in rows)
    return items


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
