"""A JSON array walked element by element as it is read, each element with its line and raw
text; bytes that are not UTF-8 reject only their element, broken JSON stops the read there."""
from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any, Iterator

from ..errors import UnreadableInput
from . import records
from .jsonl import deeper_than
from .records import MAX_DEPTH, Item

MAX_RECORD_BYTES = 256 << 20  # a JSON array element longer than this is damage; reading stops there
_SURROGATE_ESCAPE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


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
        if self.pos > records.BLOCK:  # drop what was walked past; keep the line count
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


def json_array_items(path: Path, blocks: Iterator[bytes]) -> Iterator[Item]:
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
    if deeper_than(value, MAX_DEPTH, raw):
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
