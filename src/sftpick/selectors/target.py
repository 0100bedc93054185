"""What the targeted strategies share (LESS, RDS+): the target examples, a few records of the
task the subset is chosen for, read from any supported file, optionally grouped into subtasks
by one of their fields. Checked with the options, before any model loads: a target file that
is missing, empty, of another file type or of no known record format fails at once."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, OptionError
from ..examples import Example
from ..io import read_dataset
from ..options import option
from . import Selector


@dataclass(kw_only=True, eq=False)
class TargetedSelector(Selector):
    """A strategy that chooses for a task given by `target` examples; it reads the records."""

    needs_records = True
    default_scorers = ("len",)  # it ranks by its own similarity: no IFD pass is needed first

    target: Path | None = option(None, "less, rds: the target examples, a few records of the task to select for "
                                       "(any supported format).")
    target_subtask: str | None = option(None, "less, rds: a field of the target records that groups them into "
                                              "subtasks (default: one task).")

    def check(self) -> None:
        super().check()
        if self.target is None:
            raise OptionError(f"strategy {self.name!r} selects for a task: pass --target FILE (a few of its examples)")
        self.targets_, self.subtasks_ = load_targets(self.target, self.target_subtask)


def load_targets(path: Path, subtask: str | None) -> tuple[list[Example], np.ndarray]:
    """The target examples and, per example, its subtask's label (0 for all without `subtask`)."""
    dataset = read_dataset(path)
    if not dataset.examples:
        reasons = sorted({r.kind for r in dataset.rejects})
        raise DataError(f"{path}: no target example to select for ({len(dataset.rejects)} record(s) rejected"
                        + (f": {', '.join(reasons)})" if reasons else ")"))
    if subtask is None:
        return dataset.examples, np.zeros(len(dataset.examples), dtype=np.int64)
    values = [e.record.get(subtask) if isinstance(e.record, dict) else None for e in dataset.examples]
    if any(v is None for v in values):
        where = next(e for e, v in zip(dataset.examples, values) if v is None)
        raise OptionError(f"target_subtask={subtask!r}: the target record at row {where.row} of {path} has no "
                          f"field {subtask!r}")
    _, labels = np.unique([str(v) for v in values], return_inverse=True)
    return dataset.examples, labels.astype(np.int64)
