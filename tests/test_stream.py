"""The streaming local engine: inputs read in chunks and blocks give the same records and tables
as whole reads, one bad line is one reject with its line, content repeated across chunks is
scored once, and a `run` killed with SIGKILL resumes from the parts it finished."""
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from processes import kill_when

import sftpick
from sftpick import io
from sftpick.io import Source, read_dataset
from sftpick.io import write_subset


def varied_records(real_records_path, n: int) -> list[dict]:
    """`n` real records, each made distinct by a tag, some with non-ASCII text."""
    pool = json.loads(real_records_path.read_text())
    return [{**pool[i % len(pool)], "instruction": f"{pool[i % len(pool)]['instruction']} (#{i}, café ✓)"}
            for i in range(n)]


def write_jsonl(path, records) -> bytes:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(data)
    return data


def summary(dataset):
    return ([(e.row, e.line, e.id, e.content_hash) for e in dataset.examples],
            [(r.row, r.line, r.reason, r.record) for r in dataset.rejects], dataset.n_records, dataset.sha256)


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_tiny_blocks_read_the_same_records_as_one_block(tmp_path, real_records_path, monkeypatch, kind):
    records = varied_records(real_records_path, 60)
    path = tmp_path / f"d.{kind}"
    if kind == "jsonl":
        data = write_jsonl(path, records)
        data = data.replace(b"(#7,", b"(#7\xff,")  # one byte that is not UTF-8
    else:
        data = json.dumps(records, indent=2, ensure_ascii=False).encode().replace(b"(#7,", b"(#7\xff,")
    path.write_bytes(data)
    whole = read_dataset(path)
    monkeypatch.setattr(io.records, "BLOCK", 7)  # multi-byte characters and records cut at every place
    assert summary(read_dataset(path)) == summary(whole)
    assert [r.row for r in whole.rejects] == [7] and "not valid UTF-8" in whole.rejects[0].reason
    assert len(whole.examples) == 59


def test_invalid_utf8_in_one_line_among_many_is_one_reject_with_its_line(tmp_path, real_records_path):
    records = varied_records(real_records_path, 3000)
    path = tmp_path / "d.jsonl"
    data = write_jsonl(path, records)
    lines = data.split(b"\n")
    lines[2499] = lines[2499].replace(b"caf\xc3\xa9", b"caf\xe9")  # Latin-1 in line 2500, past the first 1 MiB block
    path.write_bytes(b"\n".join(lines))
    assert len(b"\n".join(lines[:2499])) > io.records.BLOCK
    source = Source(path)
    chunks = list(source.chunks(700))
    assert [len(c.examples) + len(c.rejects) for c in chunks] == [700, 700, 700, 700, 200]
    (reject,) = [r for c in chunks for r in c.rejects]
    assert (reject.row, reject.line) == (2499, 2500) and reject.reason.startswith("not valid UTF-8: byte ")
    assert [e.row for c in chunks for e in c.examples] == [r for r in range(3000) if r != 2499]

    result = sftpick.score(path, tmp_path / "s.parquet", scorers=["mtld"], progress=False, chunk_size=700)
    assert result.counts == {"input": 3000, "scored": 2999, "rejected": 1}
    (line,) = (tmp_path / "s.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["line"] == 2500


def test_a_json_array_read_in_chunks_gives_the_jsonl_table(tmp_path, real_records_path, monkeypatch):
    records = varied_records(real_records_path, 400)
    write_jsonl(tmp_path / "d.jsonl", records)
    (tmp_path / "d.json").write_text(json.dumps(records, indent=1, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(io.records, "BLOCK", 4096)  # the array is read in many blocks
    tables = [sftpick.score(tmp_path / f"d.{kind}", scorers=["mtld"], progress=False, chunk_size=64).table
              for kind in ("jsonl", "json")]
    assert tables[0].num_rows == 400
    assert tables[0].drop(["id"]).equals(tables[1].drop(["id"]))
    assert tables[0].column("id").equals(tables[1].column("id"))


def test_content_repeated_across_chunks_is_scored_once_and_shares_its_scores(tmp_path, real_records_path):
    records = varied_records(real_records_path, 50)
    write_jsonl(tmp_path / "d.jsonl", records + records[:20] + records[5:10])  # repeats land in later chunks
    result = sftpick.score(tmp_path / "d.jsonl", tmp_path / "s.parquet", scorers=["len", "mtld"], progress=False,
                           chunk_size=16)
    assert result.timings["mtld"]["scored_now"] == 50 and result.timings["mtld"]["from_cache"] == 25
    table = result.table
    assert table.column("row").to_pylist() == list(range(75))
    mtld = table.column("mtld").to_numpy()
    np.testing.assert_array_equal(mtld[50:70], mtld[:20])
    np.testing.assert_array_equal(mtld[70:75], mtld[5:10])
    parts = list((tmp_path / "s.parquet.cache").glob("mtld-*/shard-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 50  # a part per chunk with new content
    assert len(parts) == 4


def test_the_subset_is_read_back_by_row_in_every_kind(tmp_path, real_records_path):
    records = varied_records(real_records_path, 30)
    write_jsonl(tmp_path / "d.jsonl", records)
    (tmp_path / "d.json").write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet", row_group_size=7)
    for kind in ("jsonl", "json", "parquet"):
        dataset = read_dataset(tmp_path / f"d.{kind}")
        write_subset(dataset, [21, 3, 14], tmp_path / f"s.{kind}", order="pick")
        if kind == "parquet":
            written = pq.read_table(tmp_path / f"s.{kind}").to_pylist()
        elif kind == "json":
            written = json.loads((tmp_path / f"s.{kind}").read_text(encoding="utf-8"))
        else:
            written = [json.loads(line) for line in (tmp_path / f"s.{kind}").read_text(encoding="utf-8").splitlines()]
        assert written == [records[21], records[3], records[14]], kind


def test_a_killed_run_resumes_from_its_finished_parts(tmp_path, real_records_path):
    n, chunk = 12000, 400
    data = tmp_path / "d.jsonl"
    write_jsonl(data, varied_records(real_records_path, n))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sftpick.cli", "run", str(data), "-o", str(out), "--scorers", "len,mtld",
               "--by", "len", "--budget", "5%", "--chunk-size", str(chunk), "--no-progress"]
    parts = out / "cache"
    kill_when(command, lambda: len(list(parts.glob("mtld-*/shard-*.parquet"))) >= 3,
              what="three mtld parts written", poll=0.02)
    assert not (out / "manifest.json").exists()
    finished = sum(pq.read_metadata(p).num_rows for p in parts.glob("mtld-*/shard-*.parquet"))
    assert finished % chunk == 0 and 3 * chunk <= finished < n  # whole parts only, and not all of them

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["input"] == manifest["counts"]["scored"] == n
    mtld = manifest["timings"]["scorers"]["mtld"]
    assert (mtld["from_cache"], mtld["scored_now"]) == (finished, n - finished)

    fresh = sftpick.score(data, scorers=["len", "mtld"], progress=False)  # no cache at all
    resumed = pq.read_table(out / "scores.parquet")
    assert resumed.column("row").to_pylist() == list(range(n))
    for name in ("id", "content_hash", "len", "mtld"):
        assert resumed.column(name).equals(fresh.table.column(name)), name


def test_scorer_rejects_keep_their_rows_lines_and_records_across_chunks(tmp_path):
    """Read and scorer rejects go to one log on disk as each chunk finishes, in row order."""
    short = [{"instruction": f"Add {i} and 3.", "input": "", "output": "The sum is easy to find: add them and write it."}
             for i in range(6)]
    long = {"instruction": "Explain " + "the history of the long winding river " * 8, "input": "", "output": "Long."}
    lines = [json.dumps(r) for r in short[:2]] + ["not json"] + [json.dumps(r) for r in short[2:3] + [long] + short[3:]
                                                                   + [long]]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")  # rows 4 and 8 (chunks 2 and 3) fill max_length
    result = sftpick.score(tmp_path / "d.jsonl", tmp_path / "s.parquet", scorers=["ifd"], max_length=16,
                           device="cpu", chunk_size=4, progress=False)
    expected = [(2, 3, "read"), (4, 5, "ifd"), (8, 9, "ifd")]
    assert [(r.row, r.line, r.stage) for r in result.rejects] == expected
    assert all(r.record == long and r.reason.startswith("prompt fills max_length=16")
               for r in result.rejects if r.stage == "ifd")
    written = [json.loads(line) for line in (tmp_path / "s.rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["line"], r["stage"]) for r in written] == expected and written[0]["record"] == "not json"
    assert result.table.column("row").to_pylist() == [0, 1, 3, 5, 6, 7]
    assert result.timings["ifd"]["scored_now"] == 7  # the repeat of row 4 is not scored again
    assert result.counts == {"input": 9, "scored": 6, "rejected": 3}
    assert result.dataset.rejects is None  # no list of rejects is held: they are read back from the log


def _summary_of_chunks(chunks) -> list:
    return [[(e.row, e.line, e.id, e.content_hash) for e in c.examples] + [(r.row, r.line, r.reason) for r in c.rejects]
            for c in chunks]


@pytest.mark.parametrize("part_bytes", [1, 300, 5000, 1 << 30])
def test_jsonl_parts_read_alone_give_the_records_of_the_whole_read(tmp_path, real_records_path, monkeypatch,
                                                                    part_bytes):
    """What the ray engine's read tasks do: parts cut at any byte, CRLF and blank lines, a line
    that is not UTF-8 and a last line without a newline keep their rows, lines and rejects."""
    data = write_jsonl(tmp_path / "d.jsonl", varied_records(real_records_path, 40))
    lines = data.rstrip(b"\n").split(b"\n")
    lines[9] = lines[9].replace(b"caf\xc3\xa9", b"caf\xe9")
    lines[20:20] = [b"", b"  "]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\r\n".join(lines))  # CRLF, no newline after the last record
    whole = Source(path)
    expected = _summary_of_chunks(whole.chunks(16))
    monkeypatch.setattr(io.records, "BLOCK", 97)  # parts and blocks cut lines at every place
    source = Source(path)
    parts = source.parts(part_bytes)
    assert parts[0].start == 0 and parts[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    got = _summary_of_chunks(source.regroup((source.read_part(p) for p in parts), 16))
    assert got == expected
    assert [r[:2] for r in expected[0] if len(r) == 3 and r[2].startswith("not valid UTF-8")] == [(9, 10)]
    assert (source.sha256, source.n_records) == (whole.sha256, whole.n_records) == (whole.sha256, 40)


def test_parquet_row_groups_read_alone_give_the_records_of_the_whole_read(tmp_path, real_records_path):
    records = varied_records(real_records_path, 30)
    records[4] = {"instruction": "no output"}
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet", row_group_size=7)
    whole = Source(tmp_path / "d.parquet")
    expected = _summary_of_chunks(whole.chunks(8))
    source = Source(tmp_path / "d.parquet")
    parts = source.parts()
    assert len(parts) == 5
    assert _summary_of_chunks(source.regroup((source.read_part(p) for p in parts), 8)) == expected
    assert (source.sha256, source.n_records) == (whole.sha256, 30)
    assert Source(tmp_path / "d.parquet").parts() is not None and Source(real_records_path).parts() is None
