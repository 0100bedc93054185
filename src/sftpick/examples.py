"""The one record type, `Example`, and the mapping of Alpaca, ShareGPT and OpenAI-messages
records onto it, with the validation that decides what is rejected and why."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("alpaca", "sharegpt", "openai")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
                  "system": "system", "tool": "tool", "function": "tool", "observation": "tool"}
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


class InvalidRecord(ValueError):
    """A record that cannot become an Example; the message is the reason kept in rejects."""


class UnknownFormat(ValueError):
    """A file whose records match none of the known formats."""


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

    @property
    def content_hash(self) -> str:
        """Hash of what scorers read (not of the row or id), so duplicates share cached scores."""
        payload = json.dumps([self.messages, self.instruction, self.input], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def detect_format(record: Any) -> str:
    """The format whose fields a record has; raises UnknownFormat when none fits."""
    if isinstance(record, dict):
        if "instruction" in record and "output" in record:
            return "alpaca"
        if "conversations" in record:
            return "sharegpt"
        if "messages" in record:
            return "openai"
        keys = ", ".join(sorted(map(str, record))[:8])
        raise UnknownFormat(f"record has fields [{keys}]; expected Alpaca (instruction/input/output), "
                            "ShareGPT (conversations with from/value) or OpenAI (messages with role/content)")
    raise UnknownFormat(f"records are {type(record).__name__}, expected JSON objects")


def to_example(record: Any, row: int, fmt: str) -> Example:
    """Convert one parsed record; raises InvalidRecord with the reason."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"record is a {type(record).__name__}, not an object")
    if fmt == "alpaca":
        instruction = _string_field(record, "instruction")
        input_text = _string_field(record, "input", required=False)
        output = _string_field(record, "output")
        user = instruction + ("\n" + input_text if input_text else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    elif fmt == "sharegpt":
        messages = _turns(record, "conversations", "from", "value", SHAREGPT_ROLES)
    elif fmt == "openai":
        messages = _turns(record, "messages", "role", "content", {r: r for r in OPENAI_ROLES})
    else:
        raise UnknownFormat(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    messages = _up_to_last_assistant(messages)
    if not messages[-1]["content"].strip():
        raise InvalidRecord("empty response")
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
    return value


def _turns(record: dict, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> list[dict[str, str]]:
    turns = record.get(key)
    if not isinstance(turns, list) or not turns:
        raise InvalidRecord(f"field {key!r} must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidRecord(f"{key}[{i}] is a {type(turn).__name__}, not an object")
        role, text = turn.get(role_key), turn.get(text_key)
        if role not in roles:
            raise InvalidRecord(f"{key}[{i}].{role_key}={role!r} is not one of {', '.join(sorted(roles))}")
        if not isinstance(text, str):
            raise InvalidRecord(f"{key}[{i}].{text_key} is {type(text).__name__}, expected a string")
        messages.append({"role": roles[role], "content": text})
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
    value = record.get("id")
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
