"""Reading: JSON arrays, JSONL and Parquet in, every record either an Example or a Reject with
its file, line/row and reason, in chunks (never the whole input in memory).

- records.py: Reject, RejectLog, Dataset, Chunk, Part
- source.py: Source (chunks, parts), read_dataset, scan_dataset
- jsonl.py, json_array.py, parquet.py: one reader per file kind; detect.py: the record format
- rows.py: chosen rows read back, and the subset written in the input's own format
"""
from ..errors import UnreadableInput
from .records import Chunk, Dataset, Part, Reject, RejectLog
from .rows import ORDERS, parquet_rows, raw_texts, write_subset
from .source import CHUNK_RECORDS, KINDS, PART_BYTES, Source, read_dataset, scan_dataset

__all__ = ["CHUNK_RECORDS", "KINDS", "ORDERS", "PART_BYTES", "Chunk", "Dataset", "Part", "Reject", "RejectLog",
           "Source", "UnreadableInput", "parquet_rows", "raw_texts", "read_dataset", "scan_dataset", "write_subset"]
