import html
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sftpick import api
from sftpick.cli import app
from sftpick.report import build_report
from cli_errors import one_line_error

HTML_RECORD = {"instruction": "What does this page do? <script>window.__pwned = 1</script>", "input": "",
               "output": "It runs <script>window.__pwned = 2</script>, then shows <b>bold</b> & <i>text</i>."}


SHORT = [12, 16, 17, 18, 21, 22, 24, 25]  # real records with short responses: a fast test


def write_records(path: Path, real_records_path: Path) -> Path:
    """Eight real records, one with HTML in it, and three that are rejected (bad JSON,
    missing output, empty output)."""
    real = [json.loads(real_records_path.read_text())[i] for i in SHORT]
    lines = [json.dumps(r) for r in real[:4]] + [json.dumps(HTML_RECORD), "{not json"]
    lines += [json.dumps({"instruction": "no output"}), json.dumps({"instruction": "empty", "output": ""})]
    lines += [json.dumps(r) for r in real[4:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_run(folder: Path, real_records_path: Path) -> Path:
    data = write_records(folder / "data.jsonl", real_records_path)
    api.run(data, folder / "out", 3, device="cpu", progress=False, max_length=128)
    return folder / "out"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, real_records_path):
    return make_run(tmp_path_factory.mktemp("report"), real_records_path)


def test_run_writes_the_report_and_lists_it(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["outputs"]["report"] == {"file": "report.html"}
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src" not in page and "<link" not in page  # plotly.js inlined, nothing fetched


def test_report_counts_reconcile_with_the_manifest(run_dir):
    page = (run_dir / "report.html").read_text()
    counts = json.loads((run_dir / "manifest.json").read_text())["counts"]
    assert (counts["input"], counts["rejected"], counts["selected"]) == (12, 3, 3)
    for label, n in [("input", 12), ("scored", 9), ("rejected", 3), ("selected", 3)]:
        assert f'<th>{label}</th><td class="n">{n}</td>' in page
    for reason in counts["rejected_by_reason"]:
        assert f"<th>rejected: {html.escape(reason)}</th>" in page


def test_report_escapes_dataset_text(run_dir, tmp_path):
    page = build_report(run_dir, tmp_path / "all.html", examples=10).read_text()  # every record shown
    assert page.count('class="card"') == 3 + 9
    assert "window.__pwned" not in page.replace("&lt;script&gt;window.__pwned", "")
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;text&lt;/i&gt;" in page


def test_report_has_one_histogram_per_score_column(run_dir):
    page = (run_dir / "report.html").read_text()
    for column in ("ifd", "loss_cond", "loss_direct", "n_response_tokens"):
        assert f'"text":"{column}"' in page  # subplot titles
    assert page.count('class="card"') == 8  # 3 best among the selected + 5 worst


def test_report_without_the_input_file_says_so(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "out")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["input"]["path"] = str(tmp_path / "gone.jsonl")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    page = build_report(copy).read_text()
    assert f"record texts are not shown: the input file {tmp_path / 'gone.jsonl'} is gone" in page
    assert "text not available" in page


def test_report_on_a_dataset_of_one_record(tmp_path, real_records_path):
    record = json.loads(real_records_path.read_text())[SHORT[0]]
    (tmp_path / "one.json").write_text(json.dumps([record]))
    api.run(tmp_path / "one.json", tmp_path / "out", 1, device="cpu", progress=False, max_ifd=10.0, max_length=128)
    page = (tmp_path / "out" / "report.html").read_text()
    assert '<th>selected</th><td class="n">1</td>' in page
    assert page.count('class="card"') == 2  # the one record is both the best and the worst


def test_cli_report_rebuilds_the_page(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "out")
    (copy / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").stat().st_size > 1_000_000  # plotly.js inlined


def test_cli_report_on_a_folder_without_scores_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "scores.parquet: no such file" in one_line_error(result.output)
