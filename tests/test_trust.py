"""Outputs a user can trust: a subset is never taken by position from a file that is not the
scored one, a run folder is whole or visibly incomplete, two writers never share an output,
a user's mistake is one line (exit 2, no traceback), files get the user's umask, and
progress reaches a log. Fast scorers (len, mtld) keep these tests quick."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.engines.stream import pieces as shard_pieces
from sftpick.provenance import DataMismatch, IncompleteRun, table_meta
from sftpick.writers import atomic_write, output_lock, write_parquet
from cli_errors import one_line_error

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"
FAST = ["--scorers", "len,mtld", "--by", "len", "--no-progress"]


def cli(*args):
    """The CLI in this process: (exit code, stderr as one string)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def assert_one_line_error(code, output, *fragments):
    assert code == 2, output
    message = one_line_error(output)
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trust") / "out"
    code, output = cli("run", SAMPLE, "-o", out, "--budget", "10", *FAST)
    assert code == 0, output
    return out


def selected_texts(path):
    return sorted(path.read_text().splitlines())


# ---------------------------------------------------------------- select: the right records or none

def test_select_refuses_a_file_with_a_record_removed(run_dir, tmp_path):
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[1:]))
    code, output = cli("select", edited, "--scores", run_dir / "scores.parquet", "--by", "len",
                       "--budget", "5%", "-o", tmp_path / "x.jsonl")
    assert_one_line_error(code, output, str(edited), str(run_dir / "scores.parquet"), "1 of 120 scored records")
    assert not (tmp_path / "x.jsonl").exists()


def test_select_refuses_another_dataset(run_dir, tmp_path, real_records_path):
    code, output = cli("select", real_records_path, "--scores", run_dir / "scores.parquet", "--by", "len",
                       "--budget", "5%", "-o", tmp_path / "x.json")
    assert_one_line_error(code, output, "is not the file", "scored records are not in it")


def test_select_follows_a_reordered_superset_by_content(run_dir, tmp_path):
    lines = SAMPLE.read_text().splitlines()
    extra = json.dumps({"instruction": "A new record.", "input": "", "output": "Not scored before, never chosen."})
    superset = tmp_path / "superset.jsonl"
    superset.write_text("\n".join([extra, *reversed(lines)]) + "\n")
    args = ["--scores", run_dir / "scores.parquet", "--by", "len", "--budget", "10"]
    assert cli("select", SAMPLE, *args, "-o", tmp_path / "same.jsonl")[0] == 0
    code, output = cli("select", superset, *args, "-o", tmp_path / "moved.jsonl")
    assert code == 0, output
    assert "matched to the scores by content" in output
    assert selected_texts(tmp_path / "moved.jsonl") == selected_texts(tmp_path / "same.jsonl")
    assert selected_texts(tmp_path / "same.jsonl") == selected_texts(run_dir / "selected.jsonl")


def test_select_on_the_scored_file_itself_reads_none_of_its_records(run_dir, tmp_path, monkeypatch):
    """Its SHA-256 is the one the scores record, so their rows hold: no record is read to
    check them (a 10M-record file is not loaded to select from it), only the subset's."""
    from sftpick.io import Source

    def no_whole_read(*args, **kwargs):
        raise AssertionError("the whole input was read")

    monkeypatch.setattr(Source, "chunks", no_whole_read)  # what every read of all records goes through
    code, output = cli("select", SAMPLE, "--scores", run_dir / "scores.parquet", "--by", "len", "--budget", "10",
                       "-o", tmp_path / "x.jsonl")
    assert code == 0, output
    assert selected_texts(tmp_path / "x.jsonl") == selected_texts(run_dir / "selected.jsonl")
    assert json.loads((tmp_path / "x.manifest.json").read_text())["input"]["sha256"] == \
        table_meta(pq.read_table(run_dir / "scores.parquet"))["input"]["sha256"]


def test_align_refuses_a_table_without_hashes_when_rows_do_not_match(run_dir, real_records_path):
    table = pq.read_table(run_dir / "scores.parquet").drop_columns(["content_hash"])
    with pytest.raises(DataMismatch, match="no content hashes"):
        sftpick.select(table, 3, by="len", data=real_records_path)


# ---------------------------------------------------------------- run folders: whole or visibly not

def test_run_outputs_carry_one_run_id_and_the_manifest_vouches_for_them(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert table_meta(pq.read_table(run_dir / "scores.parquet"))["run_id"] == manifest["run_id"]
    assert f'<meta name="sftpick-run-id" content="{manifest["run_id"]}">' in (run_dir / "report.html").read_text()
    for role in ("scores", "subset", "rejects"):
        assert len(manifest["outputs"][role]["sha256"]) == 64
    assert not list(run_dir.glob(".*.tmp"))


def test_readers_refuse_a_folder_whose_files_disagree(run_dir, tmp_path):
    import shutil

    copy = Path(shutil.copytree(run_dir, tmp_path / "copy"))
    (copy / "rejects.jsonl").write_text('{"from": "another run"}\n')
    code, output = cli("report", copy)
    assert_one_line_error(code, output, "rejects.jsonl was written by another run")
    code, output = cli("select", SAMPLE, "--scores", copy / "scores.parquet", "--by", "len", "--budget", "3",
                       "-o", tmp_path / "x.jsonl")
    assert_one_line_error(code, output, "was written by another run")


def test_a_run_killed_before_its_manifest_is_visibly_incomplete(run_dir, tmp_path):
    import shutil

    copy = Path(shutil.copytree(run_dir, tmp_path / "killed"))
    (copy / "manifest.json").unlink()  # a run removes it before writing its outputs, writes it last
    (copy / ".report.html.abc123.tmp").write_text("")  # what a writer killed mid-write leaves
    with pytest.raises(IncompleteRun, match="has no manifest.json: the run that wrote it did not finish"):
        sftpick.select(copy / "scores.parquet", 3, by="len")
    code, output = cli("run", SAMPLE, "-o", copy, "--budget", "10", *FAST)  # the next run cleans up
    assert code == 0, output
    assert not list(copy.glob(".*.tmp"))
    assert cli("report", copy)[0] == 0


# ---------------------------------------------------------------- two writers

def test_a_second_writer_of_one_output_stops_naming_the_lock(tmp_path):
    output = tmp_path / "same.parquet"
    lock = tmp_path / ".same.parquet.lock"
    with output_lock(lock):  # a first `sftpick score ... -o same.parquet` holds it
        result = subprocess.run([sys.executable, "-m", "sftpick.cli", "score", str(SAMPLE), "-o", str(output),
                                 "--scorers", "mtld", "--no-progress"], capture_output=True, text=True)
    assert_one_line_error(result.returncode, result.stderr, str(lock), f"sftpick pid {os.getpid()}",
                          "another sftpick is writing this output")
    assert not output.exists()
    assert sftpick.score(SAMPLE, output, scorers=["mtld"], progress=False).table.num_rows == 120  # lock released


# ---------------------------------------------------------------- a user's mistakes: one line, exit 2

@pytest.mark.parametrize(("args", "fragments"), [
    (["--scorers", "ifd", "--dtype", "foo"], ["dtype='foo' is not one of auto, float32, bfloat16, float16"]),
    (["--scorers", "ifd", "--dtype", "int8"], ["dtype='int8'", "dynamic int8 scrambles the IFD ranking"]),
    (["--scorers", "len", "--shard-size", "0"], ["shard_size=0 should be a whole number >= 1"]),
    (["--scorers", "ifd", "--device", "tpu"], ["device='tpu' is not one of"]),
    (["--scorers", "ifd", "--variant", "cheery"], ["variant='cheery' is not one of"]),
])
def test_bad_options_fail_before_any_work(tmp_path, args, fragments):
    code, output = cli("score", SAMPLE, "-o", tmp_path / "s.parquet", "--no-progress", *args)
    assert_one_line_error(code, output, *fragments)
    assert not (tmp_path / "s.parquet.cache").exists()  # nothing was scored


def test_run_checks_strategy_and_ranking_column_before_scoring(tmp_path):
    for args, fragment in ((["--strategy", "kcentre"], "unknown strategy 'kcentre'"),
                           (["--by", "ifd"], "by='ifd' is not a column of the scores"),
                           (["--budget", "0"], "budget='0' should select at least one record"),
                           (["--strategy", "deita", "--tau", "2"], "deita: tau=2.0 should be a cosine similarity"),
                           (["--strategy", "clusters", "--quota", "even"], "quota='even' is not one of"),
                           (["--strategy", "kcenter", "--seed-set", "none.json"], "seed_set='none.json': no such file")):
        code, output = cli("run", SAMPLE, "-o", tmp_path / "out", "--scorers", "len", "--by", "len", *args)
        assert_one_line_error(code, output, fragment)
    assert not (tmp_path / "out" / "cache").exists()


def test_score_and_select_write_manifests(tmp_path):
    scores = tmp_path / "s.parquet"
    assert cli("score", SAMPLE, "-o", scores, "--scorers", "len,mtld", "--no-progress")[0] == 0
    manifest = json.loads((tmp_path / "s.manifest.json").read_text())
    assert manifest["counts"]["input"] == manifest["counts"]["scored"] + manifest["counts"]["rejected"] == 120
    assert manifest["run_id"] == table_meta(pq.read_table(scores))["run_id"]
    assert [s["scorer"] for s in manifest["scorers"]] == ["len", "mtld"] and manifest["versions"]["torch"]
    code, output = cli("select", SAMPLE, "--scores", scores, "--by", "mtld", "--budget", "7", "-o",
                       tmp_path / "subset.jsonl")
    assert code == 0, output
    chosen = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert chosen["scores"]["run_id"] == manifest["run_id"] and chosen["counts"]["selected"] == 7
    assert chosen["selection"]["by"] == "mtld" and len(chosen["subset"]["sha256"]) == 64


def test_run_takes_its_options_from_a_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('scorers = "len,mtld"\nby = "mtld"\nbudget = "6"\nstrategy = "kcenter"\n'
                      'where = ["len>=20"]\nprogress = false\n')
    code, output = cli("run", SAMPLE, "-o", tmp_path / "out", "--config", config, "--budget", "4")
    assert code == 0, output
    selection = json.loads((tmp_path / "out" / "manifest.json").read_text())["selection"]
    assert (selection["by"], selection["strategy"], selection["budget"], selection["where"]) == \
        ("mtld", "kcenter", "4", ["len>=20"])  # the flag on the command line wins over the file
    config.write_text('budgt = "5%"\n')
    code, output = cli("run", SAMPLE, "-o", tmp_path / "out2", "--config", config)
    assert_one_line_error(code, output, f"{config}: budgt is no option of run (did you mean budget?)")
    assert not (tmp_path / "out2").exists()


def test_debug_keeps_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", "--debug", "score", str(tmp_path / "none.jsonl"),
                             "-o", str(tmp_path / "s.parquet")], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr and "UnreadableInput" in result.stderr


def test_the_manifest_names_library_versions(run_dir):
    versions = json.loads((run_dir / "manifest.json").read_text())["versions"]
    assert versions["python"] == sys.version.split()[0]
    assert versions["torch"] and versions["transformers"] and versions["pyarrow"]


def test_api_refuses_a_misspelt_option():
    with pytest.raises(ValueError, match="unknown option max_lenght"):
        sftpick.score(SAMPLE, max_lenght=512)


def test_a_path_with_brackets_prints_as_it_is(tmp_path):
    folder = tmp_path / "data[v2]"
    folder.mkdir()
    code, output = cli("score", folder / "missing[1].jsonl", "-o", tmp_path / "s.parquet")
    assert_one_line_error(code, output, f"{folder / 'missing[1].jsonl'}: no such file")


def test_a_diversity_strategy_with_every_record_rejected(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": ""}) + "\n" for i in range(5)))
    code, output = cli("run", data, "-o", tmp_path / "out", "--strategy", "kcenter", *FAST)
    assert_one_line_error(code, output, "the scores hold no record (every input record was rejected")
    assert len((tmp_path / "out" / "rejects.jsonl").read_text().splitlines()) == 5  # the why is written
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_clusters_default_fits_a_small_pool(tmp_path):
    head = tmp_path / "sixty.jsonl"
    head.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:60]))
    code, output = cli("run", head, "-o", tmp_path / "out", "--strategy", "clusters", "--budget", "6", *FAST)
    assert code == 0, output
    stats = json.loads((tmp_path / "out" / "manifest.json").read_text())["selection"]["stats"]
    assert stats["clusters"] == 6


# ---------------------------------------------------------------- files and logs

@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_users_umask(tmp_path, umask):
    import pyarrow as pa

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        write_parquet(pa.table({"x": [1]}), tmp_path / "b.parquet")
    finally:
        os.umask(old)
    for name in ("a.json", "b.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_progress_reaches_a_log_as_plain_lines(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", "score", str(SAMPLE), "-o", str(tmp_path / "s.parquet"),
                             "--scorers", "len,mtld"], capture_output=True, text=True,
                            env={**os.environ, "SFTPICK_LOG_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("scoring mtld:")]
    assert len(lines) >= 4  # a line per piece, not one per 64-record shard
    assert lines[-1].startswith("scoring mtld: 120/120 records (100.0%), ") and "records/s, ETA 0m00s" in lines[-1]


def test_pieces_keep_to_the_token_budget():
    import numpy as np

    costs = np.array([100, 300, 300, 500, 900, 1200, 50.0])
    pieces = shard_pieces(range(0, 7), costs, 1000)
    assert [list(p) for p in pieces] == [[0, 1, 2], [3], [4], [5], [6]]
    assert [list(p) for p in shard_pieces(range(10, 17), np.ones(20), None)] == [[10, 11], [12, 13], [14, 15], [16]]


def test_an_uncached_hub_model_fails_at_once_offline(tmp_path):
    args = ["score", SAMPLE, "-o", tmp_path / "s.parquet", "--model", "sftpick-test/not-cached", "--no-progress"]
    code, output = cli(*args, "--offline")
    assert_one_line_error(code, output, "not in the local Hugging Face cache", "offline mode is on")
    environment = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0",
                   "HF_HOME": str(tmp_path / "hf")}  # the discard port: nothing listens, the hub is unreachable
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", *map(str, args)], capture_output=True,
                            text=True, env=environment)
    assert_one_line_error(result.returncode, result.stderr, "http://127.0.0.1:9 cannot be reached")
