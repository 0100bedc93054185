"""The records of chosen rows read back from the input, and the subset written from them in the
input's own format (JSON/JSONL records byte for byte as they came)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import not_one_of
from ..writers import atomic_writer, write_parquet
from .jsonl import jsonl_lines
from .records import Dataset
from .source import file_blocks, items_of

ORDERS = ("input", "pick")


def write_subset(dataset: Dataset, rows: Iterable[int], path: str | Path, *, order: str = "input") -> None:
    """Write the chosen records in the input's own format (JSON/JSONL records byte for byte as
    they came), in input order or (`order="pick"`) in the order given: the order a strategy
    picked them, best first. The input is read again as a stream and only the chosen records
    are kept in memory."""
    if order not in ORDERS:
        raise not_one_of("order", order, ORDERS)
    rows = np.asarray(list(rows), dtype=np.int64)
    rows = np.sort(rows) if order == "input" else rows
    if dataset.kind == "parquet":
        write_parquet(parquet_rows(dataset.path, rows), path)
        return
    texts = raw_texts(dataset.path, dataset.kind, rows)
    with atomic_writer(path) as out:
        if dataset.kind == "jsonl":
            for row in rows:
                out.write(texts[int(row)].encode() + b"\n")
        else:
            out.write(b"[\n" + ",\n".join(texts[int(row)] for row in rows).encode() + b"\n]\n" if len(rows) else b"[]\n")


def parquet_rows(path: Path, rows: np.ndarray):
    """The table of `rows` (in that order), read row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    wanted = np.sort(rows)
    parts, start = [], 0
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        inside = wanted[(wanted >= start) & (wanted < start + size)]
        if len(inside):
            parts.append(parquet.read_row_group(group).take(pa.array(inside - start)))
        start += size
    table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table()
    return table.take(pa.array(np.searchsorted(wanted, rows))) if len(rows) else table


def raw_texts(path: Path, kind: str, rows: np.ndarray) -> dict[int, str]:
    """Row -> the record's own text (as written to a JSON/JSONL subset), for `rows` only."""
    wanted = set(np.asarray(rows).tolist())
    texts = {}
    if kind == "jsonl":
        with open(path, "rb") as handle:
            for row, (_, line) in enumerate(jsonl_lines(file_blocks(path, handle, None), shape=False)):
                if row in wanted:
                    texts[row] = line.decode("utf-8")
        return texts
    for row, (_, _, text, _) in enumerate(items_of(path, kind)):
        if row in wanted:
            texts[row] = text
    return texts
