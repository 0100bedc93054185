"""Report sections a person checks a run with: a warning when a rating collapses to one
value, perplexity-like columns on a log scale, the scorers' own counts, and a 2-D map of
the embedding space with the selected records on it."""
from pathlib import Path

import numpy as np
import pyarrow as pa
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.report import collapse_warnings
from sftpick.report.figures import histogram_values

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"


def test_collapse_is_warned_about_only_when_one_value_holds_most():
    rng = np.random.default_rng(0)
    collapsed = np.where(rng.uniform(size=100) < 0.8, 3.0, rng.integers(1, 6, size=100))
    spread = rng.integers(1, 6, size=100).astype(float)
    table = pa.table({"row": np.arange(100), "judge": collapsed, "quality": spread, "ifd": rng.uniform(size=100)})
    warnings = collapse_warnings(table)
    assert len(warnings) == 1 and warnings[0].startswith("judge: ") and "the value 3" in warnings[0]
    assert collapse_warnings(table.slice(0, 10)) == []  # too few records to say


def test_perplexity_like_columns_are_drawn_in_log10():
    ppl = np.array([2.0, 3.0, 5.0, 4000.0])
    drawn, title = histogram_values(ppl, "ppl_cond")
    assert title == "ppl_cond (log10)" and np.allclose(drawn, np.log10(ppl))
    assert histogram_values(np.array([0.2, 0.5, 0.9]), "ifd")[1] == "ifd"
    spread = np.geomspace(1, 1e6, 50)
    assert histogram_values(spread, "loss")[1] == "loss (log10)"


def test_report_maps_the_embedding_space_and_lists_the_scorers(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(out), "--scorers", "len,mtld", "--by", "len",
                                      "--strategy", "kcenter", "--budget", "10", "--no-progress"])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "all-minilm-l6-v2: first two principal components" in page
    assert '<table id="scorers"><tr><th>len</th>' in page and "scored_now = 120" in page
