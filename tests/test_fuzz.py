"""Fuzz: a JSONL file of real records with about 30% of its lines damaged in every way a real
file gets damaged. `sftpick score` must score what it can, reject the rest with line and
reason, and never stop: exit 0, no traceback, every non-blank line counted once."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

import sftpick
from sftpick.data import sample_path

N_LINES = 3000
DAMAGED = 0.3


def real_records(fixture: Path) -> list[dict]:
    records = json.loads(fixture.read_text())
    records += [json.loads(line) for line in sample_path().read_text().splitlines() if line.strip()]
    return records


def dumps(record: dict, rng: random.Random) -> bytes:
    """One JSON line, with non-ASCII text raw or as \\u escapes (lone surrogates: always escaped)."""
    text = json.dumps(record, ensure_ascii=rng.random() < 0.5)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate can only be written as an escape
        return json.dumps(record).encode()


def with_output(record: dict, output) -> dict:
    return {**record, "output": output}


def insert(line: bytes, what: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(1, len(line) - 1)
    return line[:at] + what + line[at:]


def as_sharegpt(record: dict) -> dict:
    return {"conversations": [{"from": "human", "value": record["instruction"]},
                              {"from": "gpt", "value": record["output"]}]}


# name -> (damage(record, line, rng) -> line, is the line rejected?)
MUTATIONS = {
    "invalid UTF-8 byte": (lambda r, line, rng: insert(line, rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80"]), rng), True),
    "lone surrogate": (lambda r, line, rng: dumps(with_output(r, r["output"] + "\ud800"), rng), True),
    "raw NUL byte": (lambda r, line, rng: insert(line, b"\x00", rng), True),
    "escaped NUL": (lambda r, line, rng: dumps(with_output(r, "a\u0000" + r["output"]), rng), True),
    "1 MB field": (lambda r, line, rng: dumps(with_output(r, "data " * 210_000), rng), True),
    "deep nesting": (lambda r, line, rng: rng.choice([b"[" * 3000 + b"]" * 3000,
                                                      dumps({**r, "meta": json.loads("[" * 150 + "]" * 150)}, rng)]), True),
    "two records on one line": (lambda r, line, rng: line + rng.choice([b"", b" "]) + line, True),
    "trailing garbage": (lambda r, line, rng: line + rng.choice([b"}", b" ok", b",", b"\x1a"]), True),
    "truncated": (lambda r, line, rng: line[: rng.randrange(1, len(line) - 1)], True),
    "ShareGPT line": (lambda r, line, rng: dumps(as_sharegpt(r), rng), True),
    "CSV line": (lambda r, line, rng: f'"{r["instruction"][:30]}","","{r["output"][:30]}"'.replace("\n", " ").encode(),
                 True),
    "array on one line": (lambda r, line, rng: b"[" + line + b"]", True),
    "invisible response": (lambda r, line, rng: dumps(with_output(r, "\u200b\u2060 \ufeff"), rng), True),
    "empty instruction": (lambda r, line, rng: dumps({**r, "instruction": "", "input": ""}, rng), True),
    "wrong type": (lambda r, line, rng: dumps(with_output(r, rng.choice([42, None, ["a"], {"t": "x"}])), rng), True),
    "BOM on the line": (lambda r, line, rng: b"\xef\xbb\xbf" + line, False),  # files joined with cat
    "CRLF ending": (lambda r, line, rng: line + b"\r", False),
}
RARE = {"1 MB field": 3, "deep nesting": 10}  # big lines: a few are enough


def fuzzed_file(path: Path, records: list[dict], seed: int = 20240611) -> tuple[int, set[int]]:
    """Write the file; return its number of non-blank lines and the lines that must be rejected."""
    rng = random.Random(seed)
    kinds, used = list(MUTATIONS), {name: 0 for name in MUTATIONS}
    lines, rejected = [b"\xef\xbb\xbf" + dumps(records[0], rng)], set()  # a BOM opens the file
    while len(lines) < N_LINES:
        record = rng.choice(records)
        line = dumps(record, rng)
        if rng.random() < 0.02:
            lines.append(rng.choice([b"", b"   ", b"\r"]))  # blank lines are not records
            continue
        if rng.random() < DAMAGED:
            # every kind early (lines 2..), then at random
            name = kinds[len(lines) - 1] if len(lines) <= len(kinds) else rng.choice(kinds)
            if used[name] >= RARE.get(name, N_LINES):
                continue
            used[name] += 1
            damage, rejects = MUTATIONS[name]
            line = damage(record, line, rng)
            if rejects:
                rejected.add(len(lines) + 1)
        lines.append(line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert all(used.values()), used
    return sum(1 for line in lines if line.strip()), rejected


def test_score_survives_a_damaged_file(tmp_path, real_records_path):
    data = tmp_path / "fuzzed.jsonl"
    n_records, must_reject = fuzzed_file(data, real_records(real_records_path))
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", "score", str(data), "--scorers", "len,mtld",
                             "-o", str(tmp_path / "out.parquet"), "--device", "cpu", "--no-progress"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(sftpick.__file__).parents[1])})  # this code
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    scored = pq.read_table(tmp_path / "out.parquet")
    rejects = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert scored.num_rows + len(rejects) == n_records
    assert all(isinstance(r["line"], int) and r["reason"].strip() for r in rejects)
    assert {r["line"] for r in rejects} == must_reject
    assert len(set(scored.column("row").to_pylist()) | {r["row"] for r in rejects}) == n_records
