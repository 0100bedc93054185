"""The command line as a user meets it: whole runs, counts that reconcile, and one-line
errors (exit code 2, no traceback) for unreadable input and missing models."""
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from cli_errors import one_line_error

GOOD = [{"instruction": "Give three tips for staying healthy.", "input": "",
         "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
        {"instruction": "Translate to French.", "input": "Good morning, my friend.", "output": "Bonjour, mon ami."},
        {"instruction": "What is the capital of Japan?", "input": "", "output": "The capital of Japan is Tokyo."},
        {"instruction": "Summarise in one sentence.", "input": "The cat sat on the mat all day long, ignoring everyone.",
         "output": "A cat spent the whole day on the mat, ignoring everyone."}]


def sftpick(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def mixed_jsonl(tmp_path):
    lines = [json.dumps(r) for r in GOOD] + ['{"instruction": "broken', json.dumps({"instruction": "x", "output": ""})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_writes_everything_and_counts_reconcile(tmp_path, mixed_jsonl):
    out = tmp_path / "out"
    result = sftpick("run", mixed_jsonl, "-o", out, "--budget", "2", "--max-ifd", "10", "--device", "cpu", "--no-progress")
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["input"], counts["scored"], counts["rejected"], counts["selected"]) == (6, 4, 2, 2)
    assert counts["rejected_by_reason"] == {"invalid JSON": 1, "empty response": 1}
    assert manifest["input"]["format"] == "alpaca" and len(manifest["input"]["sha256"]) == 64
    assert manifest["scorers"][0]["model_revision"].startswith("gguf-sha256:")
    assert manifest["selection"]["budget_count"] == 2
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["row"]) for r in rejects] == [(5, 4), (6, 5)]
    scores = pq.read_table(out / "scores.parquet")
    assert scores.column("row").to_pylist() == [0, 1, 2, 3]
    selected = (out / "selected.jsonl").read_text().splitlines()
    chosen = sorted(scores.filter(scores.column("selected")).column("row").to_pylist())
    assert selected == [json.dumps(GOOD[row]) for row in chosen]
    ifd = dict(zip(scores.column("row").to_pylist(), scores.column("ifd").to_pylist()))
    assert min(ifd[r] for r in chosen) >= max(v for r, v in ifd.items() if r not in chosen)
    assert "input" in result.stderr and "rejected" in result.stderr


def test_select_command_uses_existing_scores(tmp_path, mixed_jsonl):
    scores = tmp_path / "scores.parquet"
    sftpick("score", mixed_jsonl, "-o", scores, "--device", "cpu", "--no-progress")
    assert (tmp_path / "scores.rejects.jsonl").read_text().count("\n") == 2
    sftpick("select", mixed_jsonl, "--scores", scores, "--by", "n_response_tokens", "--budget", "1", "-o", tmp_path / "s.jsonl")
    longest = max(GOOD, key=lambda r: len(r["output"]))
    assert (tmp_path / "s.jsonl").read_text() == json.dumps(longest) + "\n"


@pytest.mark.parametrize("args, message", [
    (["score", "missing.jsonl", "-o", "x.parquet"], "no such file"),
    (["score", "{bad}", "-o", "x.parquet", "--model", "/no/such/model"], "cannot load model '/no/such/model'"),
    (["score", "{unknown}", "-o", "x.parquet"], "unknown format"),
    (["select", "{bad}", "--scores", "none.parquet", "--budget", "5%", "-o", "s.jsonl"], "none.parquet"),
    (["run", "{bad}", "-o", "out", "--budget", "lots"], "budget='lots'"),
    (["score", "{bad}", "-o", "x.parquet", "--variant", "other"], "variant='other' is not one of"),
])
def test_errors_are_one_line_and_exit_2(tmp_path, mixed_jsonl, args, message):
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text('{"question": "q", "answer": "a"}\n')
    args = [str(a).format(bad=mixed_jsonl, unknown=unknown) for a in args]
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", *args, "--device", "cpu"]
                            if args[0] != "select" else [sys.executable, "-m", "sftpick.cli", *args],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in one_line_error(result.stderr)


@pytest.mark.parametrize("columns", ["40", "300"])
@pytest.mark.parametrize("args, message", [
    (["run", "{data}", "-o", "{long}/out", "--budgt", "5"],
     "no such option --budgt (did you mean --budget?) (see `sftpick run --help`)"),
    (["run", "{data}", "-o", "{long}/out", "--config", "{long}/run.toml"],
     "{long}/run.toml: budgt is no option of run (did you mean budget?) (see `sftpick run --help`)"),
    (["run", "{data}", "-o", "{long}/out", "--scorers", "len", "--strategy", "kcentre"],
     "unknown strategy 'kcentre' (did you mean kcenter?); valid strategies:"),
    (["score", "{data}", "-o", "{long}/s.parquet", "--scorers", "mtdl"], "unknown scorer 'mtdl' (did you mean mtld?)"),
    (["run"], "Missing argument 'data'. (see `sftpick run --help`)"),
])
def test_usage_errors_are_one_line_whatever_the_width_and_paths(tmp_path, mixed_jsonl, columns, args, message):
    """A usage error is the one line `error: …` with exit code 2, in a log (stderr is a pipe),
    at any terminal width and for a path longer than any terminal."""
    long = tmp_path.joinpath(*["a-folder-with-a-long-name"] * 8)
    long.mkdir(parents=True)
    (long / "run.toml").write_text('budgt = "5%"\n')
    args = [a.format(data=mixed_jsonl, long=long) for a in args]
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", *args], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": columns})
    assert result.returncode == 2, result.stderr
    assert one_line_error(result.stderr).startswith(message.format(long=long))


def test_an_unusable_output_path_is_one_line_and_exit_2(tmp_path, mixed_jsonl):
    (tmp_path / "x.parquet.cache").write_text("a file where the resume cache folder should go")
    result = sftpick("score", mixed_jsonl, "-o", tmp_path / "x.parquet", "--device", "cpu", check=False)
    assert result.returncode == 2 and "x.parquet.cache" in one_line_error(result.stderr)


@pytest.mark.parametrize("name, content, args, message", [
    ("alpaca.jsonl", "\n".join(json.dumps(r) for r in GOOD), ["--format", "sharegpt"],
     "--format sharegpt does not match {path}: its records look like Alpaca"),
    ("array.jsonl", json.dumps(GOOD, indent=2), [],
     "{path}: looks like a JSON array spread over many lines (line 1 opens it with '['), not JSON Lines"),
])
def test_a_file_that_does_not_fit_is_one_line_and_exit_2(tmp_path, name, content, args, message):
    path = tmp_path / name
    path.write_text(content)
    result = sftpick("score", path, "-o", tmp_path / "x.parquet", "--scorers", "mtld", *args, check=False)
    assert result.returncode == 2
    assert one_line_error(result.stderr).startswith(message.format(path=path))


def test_the_cli_imports_no_model_or_numeric_library_until_a_command_needs_one():
    """A fact, not a timing (benchmarks/startup.py times it): `--help`, a usage error, `select`
    and `report` pay only for what they use."""
    import subprocess
    import sys

    heavy = ("torch", "transformers", "sklearn", "scipy", "faiss", "plotly", "sentence_transformers", "ray", "peft",
             "statsmodels", "pandas")
    code = f"import sys, sftpick.cli; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []
