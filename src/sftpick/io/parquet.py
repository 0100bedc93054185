"""Parquet rows as records, one batch in memory at a time; a cell that is not UTF-8 rejects
its row only."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import UnreadableInput
from .records import Item


def parquet_items(path: Path, row_groups: list[int] | None = None) -> Iterator[Item]:
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
