"""The one record type, `Example`, and the mapping of Alpaca, ShareGPT and OpenAI-messages
records onto it, with the validation that decides what is rejected and why."""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .errors import InvalidRecord, UnknownFormat  # noqa: F401  (raised here; importable from here)

FORMATS = ("alpaca", "sharegpt", "openai")
# The fields that make a record one format (detection, and "a ShareGPT record in an Alpaca file").
FORMAT_FIELDS = {"alpaca": ("instruction", "output"), "sharegpt": ("conversations",), "openai": ("messages",)}
FORMAT_NAMES = {"alpaca": "an Alpaca", "sharegpt": "a ShareGPT", "openai": "an OpenAI-messages"}
# Longer text is damage, not an SFT record (about 250k tokens, beyond any model's context), and
# tokenizing it stalls a whole batch; configurable here.
MAX_FIELD_CHARS = 1_000_000
_SURROGATE = re.compile("[\ud800-\udfff]")
# Letters that render as nothing (Hangul fillers, braille blank); Cc/Cf/Z* are found by category.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp"))
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system", "tool": "tool", "function": "tool", "observation": "tool"}
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass
class Example:
    """One input record. The scored response is the last assistant turn of `messages`, its
    context every turn before it. `record` is the original, untouched."""

    row: int
    id: str
    messages: list[dict[str, str]]
    record: dict[str, Any] = field(repr=False)
    # Alpaca's fields, kept apart for prompt templates; other formats join the context turns.
    instruction: str = ""
    input: str = ""
    line: int | None = None  # 1-based line in a JSON/JSONL file, for messages about the record

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]

    @property
    def context(self) -> list[dict[str, str]]:
        return self.messages[:-1]

    @cached_property
    def content_hash(self) -> str:
        """Hash of what scorers read (not of the row or id), so duplicates share cached scores;
        computed once."""
        payload = json.dumps([self.messages, self.instruction, self.input], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def formats_of(record: Any) -> list[str]:
    """The formats whose fields `record` has, in detection order (none for a non-object)."""
    if not isinstance(record, dict):
        return []
    return [fmt for fmt, fields in FORMAT_FIELDS.items() if all(name in record for name in fields)]


def detect_format(record: Any) -> str:
    """The format whose fields a record has; raises UnknownFormat when none fits."""
    if isinstance(record, dict):
        fits = formats_of(record)
        if fits:
            return fits[0]
        keys = ", ".join(sorted(map(str, record))[:8])
        raise UnknownFormat(f"record has fields [{keys}]; expected Alpaca (instruction/input/output), "
                            "ShareGPT (conversations with from/value) or OpenAI (messages with role/content)")
    raise UnknownFormat(f"records are {type(record).__name__}, expected JSON objects")


def to_example(record: Any, row: int, fmt: str) -> Example:
    """Convert one parsed record; raises InvalidRecord with the reason."""
    if fmt not in FORMATS:
        raise UnknownFormat(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(record, dict):
        raise InvalidRecord(f"record is a {type(record).__name__}, not an object")
    fits = formats_of(record)
    if fits and fmt not in fits:
        raise InvalidRecord(f"{FORMAT_NAMES[fits[0]]} record in {FORMAT_NAMES[fmt]} file")
    if fmt == "alpaca":
        instruction = _string_field(record, "instruction")
        input_text = _string_field(record, "input", required=False)
        output = _string_field(record, "output")
        user = instruction + ("\n" + input_text if input_text else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    elif fmt == "sharegpt":
        messages = _turns(record, "conversations", "from", "value", SHAREGPT_ROLES)
    else:
        messages = _turns(record, "messages", "role", "content", {r: r for r in OPENAI_ROLES})
    messages = _up_to_last_assistant(messages)
    _check_not_blank(messages[-1]["content"], "response")
    _check_not_blank("".join(m["content"] for m in messages[:-1]), "instruction")
    if fmt == "alpaca":
        instruction, input_text = record["instruction"], record.get("input") or ""
    else:
        instruction, input_text = "\n".join(m["content"] for m in messages[:-1]), ""
    example = Example(row=row, id="", messages=messages, record=record,
                      instruction=instruction, input=input_text)
    example.id = _record_id(record) or example.content_hash[:16]
    return example


def _string_field(record: dict, name: str, *, required: bool = True) -> str:
    if name not in record or record[name] is None:
        if required:
            raise InvalidRecord(f"missing field {name!r}")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise InvalidRecord(f"field {name!r} is {type(value).__name__}, expected a string")
    return check_text(value, name)


def check_text(text: str, where: str) -> str:
    """`text` if tokenizers, embedders and UTF-8 writers can all take it, else InvalidRecord:
    too long, a NUL (C libraries and tokenizers cut or choke on it), a lone surrogate
    (valid JSON, `"\\ud800"`, but it cannot be encoded as UTF-8)."""
    if len(text) > MAX_FIELD_CHARS:
        raise InvalidRecord(f"field too long: {where!r} has {len(text):,} characters, over the limit of "
                            f"{MAX_FIELD_CHARS:,}")
    if "\x00" in text:
        raise InvalidRecord(f"text holds a NUL character: \\u0000 in field {where!r} at character "
                            f"{text.index(chr(0)) + 1}")
    surrogate = _SURROGATE.search(text)
    if surrogate:
        raise InvalidRecord(f"text holds a lone surrogate: \\u{ord(surrogate[0]):04x} in field {where!r} "
                            f"at character {surrogate.start() + 1}")
    return text


def is_blank(text: str) -> bool:
    """True when nothing in `text` would show: whitespace, zero-width and other format or
    control characters (U+200B, U+2060, U+FEFF, …), Hangul fillers."""
    return all(ch.isspace() or ch in _INVISIBLE_LETTERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES
               for ch in text)


def _check_not_blank(text: str, what: str) -> None:
    if not text.strip():
        raise InvalidRecord(f"empty {what}")
    if is_blank(text):
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in sorted({ch for ch in text if not ch.isspace()}))[:60]
        raise InvalidRecord(f"empty {what} (only invisible characters: {shown})")


def _turns(record: dict, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        raise InvalidRecord(f"field {key!r} must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidRecord(f"{key}[{i}] is a {type(turn).__name__}, not an object")
        role, text = turn.get(role_key), turn.get(text_key)
        if not isinstance(role, str) or role not in roles:
            raise InvalidRecord(f"{key}[{i}].{role_key}={_short(role)} is not one of {', '.join(sorted(roles))}")
        if not isinstance(text, str):
            raise InvalidRecord(f"{key}[{i}].{text_key} is {type(text).__name__}, expected a string")
        messages.append({"role": roles[role], "content": check_text(text, f"{key}[{i}].{text_key}")})
    return messages


def _up_to_last_assistant(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Keep turns up to the last assistant turn (trailing user turns have no response to score)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise InvalidRecord("no assistant turn")
    if last == 0:
        raise InvalidRecord("assistant turn has no instruction before it")
    return messages[: last + 1]


def _record_id(record: dict) -> str | None:
    """The record's own id; it goes into the score table, so it must be writable text too."""
    value = record.get("id")
    if isinstance(value, str):
        return check_text(value, "id")
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # Python will not print an int of more than 4300 digits
            raise InvalidRecord("field 'id' is an integer too long to print") from None
    return None


def _short(value: Any, limit: int = 40) -> str:
    """repr of a value for a reason, cut to `limit` characters (repr escapes surrogates and NUL)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
