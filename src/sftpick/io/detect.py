"""Which record format a file holds (Alpaca, ShareGPT, OpenAI), from its first records."""
from __future__ import annotations

from pathlib import Path

from ..errors import UnknownFormat
from ..examples import FORMAT_NAMES, FORMATS, formats_of
from .records import Item

DETECT_WINDOW = 100  # records looked at to detect the format
EXPECTED_FIELDS = ("Alpaca (instruction/input/output), ShareGPT (conversations with from/value) "
                   "or OpenAI (messages with role/content)")


def resolve_format(path: Path, kind: str, items: list[Item], fmt: str | None) -> str:
    """The records' format: detected from the first readable records, or `fmt` when some of
    them fit it (a forced format that fits none would reject every record: a file-level error)."""
    if fmt is not None and fmt not in FORMATS:
        raise UnknownFormat(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    window = items[:DETECT_WINDOW]
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
