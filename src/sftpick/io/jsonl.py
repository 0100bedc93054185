"""JSON Lines: one record per line, read block by block; a bad line is one reject, never a lost
file. Also the parts a worker reads alone (whole lines, numbered)."""
from __future__ import annotations

import codecs
import itertools
import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import UnreadableInput
from . import records
from .records import MAX_DEPTH, Item, Part


def jsonl_items(path: Path, blocks: Iterator[bytes]) -> Iterator[Item]:
    """One item per non-blank line. Lines are split and decoded one by one, so a line that is
    not UTF-8 is one reject, not a lost file."""
    for number, line in jsonl_lines(blocks):
        if number is not None:
            yield jsonl_item(number, line)
        else:
            _check_jsonl_shape(path, *line)


def jsonl_lines(blocks: Iterator[bytes], *, shape: bool = True,
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


def jsonl_item(number: int, line: bytes) -> Item:
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
    if deeper_than(value, MAX_DEPTH, text):
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, None


def _extra_data_reason(text: str, pos: int) -> str:
    try:
        json.JSONDecoder().raw_decode(text, pos)
    except (ValueError, RecursionError):
        return f"text after the record (column {pos + 1}): {text[pos:pos + 30]!r}"
    return f"two JSON values on one line (the second starts at column {pos + 1}); JSON Lines holds one record per line"


def deeper_than(value: Any, limit: int, text: str) -> bool:
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


def jsonl_parts(path: Path, part_bytes: int, digest) -> list[Part]:
    """Parts of about `part_bytes`, each ending after a newline, with the number of its first
    line; one pass over the file, which also feeds `digest`."""
    parts, start, first_line, pos, newlines = [], 0, 1, 0, 0
    with open(path, "rb") as handle:
        while block := handle.read(records.BLOCK):
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


def range_blocks(handle, length: int) -> Iterator[bytes]:
    while length > 0 and (block := handle.read(min(records.BLOCK, length))):
        length -= len(block)
        yield block
