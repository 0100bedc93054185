"""What reading makes: Examples (examples.py) and Rejects (file, row, line, stage, reason),
the rejects log on disk, a dataset's description, and the chunks and parts a read is cut into."""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..examples import Example

BLOCK = 1 << 20  # bytes read at a time (read as records.BLOCK, so a test can make blocks tiny)
MAX_DEPTH = 100  # nesting levels a record may have (real records nest a handful)
Item = tuple[int | None, Any, str, str | None]  # (line, parsed value, raw text, parse error)


def reason_kind(reason: str) -> str:
    """Group reasons that differ only in detail ("invalid JSON: … at column 7" -> "invalid JSON")."""
    return reason.split(":")[0].split(" (")[0]


@dataclass
class Reject:
    file: str
    row: int
    line: int | None
    stage: str  # "read" or the name of the scorer that refused it
    reason: str
    record: Any = None  # the parsed record, or its raw text when it is not valid JSON

    @property
    def kind(self) -> str:
        """What rejects are counted by: the reason without its detail."""
        return reason_kind(self.reason)

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
