"""Where a score table came from, and whether a run folder is whole.

A score table carries in its Parquet metadata the path and sha256 of the input it scored and
the id of the run that wrote it, and one `content_hash` per row (the hash scorers key their
cache by). So no reader has to trust a position: `align` checks the rows of a data file
against the scores by content, follows a reordered or extended copy by content, and refuses
any other file. A run writes its manifest last, naming every file it vouches for with its
sha256; `verify_run` refuses a folder whose files are not the ones its manifest names, so
a run killed while writing is visibly incomplete, never a silent mix of two runs.
"""
from __future__ import annotations

import json
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from .errors import DataMismatch, IncompleteRun  # noqa: F401  (raised here; importable from here)
from .examples import Example
from .io import Dataset
from .writers import file_sha256, read_parquet

META_KEY = b"sftpick"
HASH = "content_hash"
MANIFEST = "manifest.json"
VOUCHED = ("scores", "subset", "rejects")  # outputs whose hashes the manifest holds; the report is rebuilt


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def stamp(table: pa.Table, dataset: Dataset, run_id: str, *, manifest: bool = False,
          scorers: list[dict] | None = None) -> pa.Table:
    """The table with its provenance in the schema metadata; `manifest=True` says that a
    run's manifest beside it must vouch for it; `scorers`: what made its columns (each
    scorer's config; kept from an earlier stamp when not given)."""
    scorers = scorers if scorers is not None else table_meta(table).get("scorers")
    meta = {"input": {"path": str(dataset.path.resolve()), "sha256": dataset.sha256}, "run_id": run_id,
            "manifest": MANIFEST if manifest else None, **({"scorers": scorers} if scorers else {})}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta)})


def table_meta(table: pa.Table | pa.Schema) -> dict:
    schema = table if isinstance(table, pa.Schema) else table.schema
    return json.loads((schema.metadata or {}).get(META_KEY, b"{}"))


def align(table: pa.Table, dataset: Dataset, scores_name: str = "the scores") -> tuple[pa.Table, str | None]:
    """The table with its `row` column pointing into `dataset`, and a note when the rows had
    to be found by content. Rows are kept by position only when every row's record in
    `dataset` is the scored one (same content hash, or the same id for a table without
    hashes); otherwise each scored record is looked up by content, and any one missing from
    `dataset` raises DataMismatch naming both files."""
    rows = table.column("row").to_numpy()
    if same_file(table, dataset) or _same_records_at(rows, table, dataset):
        return table, None
    where = f"{dataset.path} is not the file {scores_name} were computed from"
    source = table_meta(table).get("input", {}).get("path")
    where += f" ({source})" if source else ""
    if HASH not in table.column_names:
        raise DataMismatch(f"{where}, and the scores hold no content hashes to find the records by")
    found = rows_by_content(table.column(HASH).to_pylist(), dataset.examples)
    missing = int(np.sum(found < 0))
    if missing:
        raise DataMismatch(f"{where}: {missing} of {table.num_rows} scored records are not in it")
    note = f"{dataset.path} differs from the scored file; its records were matched to the scores by content"
    return table.set_column(table.column_names.index("row"), "row", pa.array(found)), note


def same_file(table: pa.Table, dataset: Dataset) -> bool:
    """The dataset is the very file (same bytes) the table was scored from: its rows hold."""
    recorded = table_meta(table).get("input", {}).get("sha256")
    return recorded is not None and recorded == dataset.sha256


def _same_records_at(rows: np.ndarray, table: pa.Table, dataset: Dataset) -> bool:
    by_row = {e.row: e for e in dataset.examples}
    if HASH in table.column_names:
        expected, attribute = table.column(HASH).to_pylist(), "content_hash"
    elif "id" in table.column_names:
        expected, attribute = table.column("id").to_pylist(), "id"
    else:
        return False  # neither hashes nor ids: only the file's own SHA-256 (`same_file`, checked first) vouches
    return all(int(r) in by_row and getattr(by_row[int(r)], attribute) == value
               for r, value in zip(rows, expected))


def rows_by_content(hashes: list[str], examples: Iterable[Example]) -> np.ndarray:
    """For each hash, a row of `examples` with that content (-1 if none); records that occur
    several times are matched one to one, in order. `examples` is read once, as it comes
    (a stream of a file's chunks serves), keeping only the rows of the wanted contents."""
    wanted = set(hashes)
    available: dict[str, deque[int]] = defaultdict(deque)
    for example in examples:
        if example.content_hash in wanted:
            available[example.content_hash].append(example.row)
    return np.array([available[h].popleft() if available.get(h) else -1 for h in hashes], dtype=np.int64)


# ---------------------------------------------------------------- run folders

def vouch(folder: Path, outputs: dict[str, str]) -> dict[str, dict]:
    """Manifest entries for `outputs` (role -> file name): name and sha256 of each file."""
    return {role: {"file": name, "sha256": file_sha256(folder / name)} if role in VOUCHED else {"file": name}
            for role, name in outputs.items()}


def verify_run(folder: str | Path) -> dict:
    """The manifest of a whole run folder; IncompleteRun when the manifest is missing or a
    file it vouches for is absent or is not the one it names."""
    folder = Path(folder)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise IncompleteRun(f"{folder} has no {MANIFEST}: the run that wrote it did not finish; run it again")
    manifest = json.loads(manifest_file.read_text())
    for role, entry in manifest.get("outputs", {}).items():
        if not isinstance(entry, dict) or "sha256" not in entry:
            continue
        path = folder / entry["file"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            state = "is missing" if not path.is_file() else "was written by another run"
            raise IncompleteRun(f"{path} {state} (run {manifest.get('run_id')}'s {MANIFEST} vouches for "
                                f"another {role} file); run it again")
    return manifest


def check_scores_file(path: str | Path) -> pa.Table:
    """Read a score table; one written by `run` must still be vouched for by its run's manifest."""
    table = read_parquet(path)
    meta = table_meta(table)
    if meta.get("manifest"):
        manifest = verify_run(Path(path).parent)
        if manifest.get("run_id") != meta.get("run_id"):
            raise IncompleteRun(f"{path} is from run {meta.get('run_id')}, but {Path(path).parent / MANIFEST} "
                                f"is run {manifest.get('run_id')}'s; run it again")
    return table
