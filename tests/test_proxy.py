import json

import pytest
from typer.testing import CliRunner

from sftpick.cli import app
from sftpick.io import read_dataset
from sftpick.proxy import sample_examples, score_with_proxy
from cli_errors import one_line_error

STRONG = {"model": "smollm2-135m", "template": "alpaca", "device": "cpu", "progress": False, "max_length": 128}
SHORT = [12, 16, 17, 18, 19, 20, 21, 22, 24, 25, 23, 13, 4, 2]  # real records with short responses


@pytest.fixture(scope="module")
def records(tmp_path_factory, real_records_path):
    """14 real records (a fast test)."""
    real = json.loads(real_records_path.read_text())
    path = tmp_path_factory.mktemp("proxy") / "records.json"
    path.write_text(json.dumps([real[i] for i in SHORT]))
    return path


def test_sample_is_seeded_in_input_order_and_capped(real_dataset):
    examples = real_dataset.examples
    first = [e.row for e in sample_examples(examples, 10, seed=0)]
    assert first == [e.row for e in sample_examples(examples, 10, seed=0)]
    assert first != [e.row for e in sample_examples(examples, 10, seed=1)]
    assert first == sorted(first) and len(set(first)) == 10
    assert len(sample_examples(examples, 1000, seed=0)) == len(examples)


def test_same_model_as_proxy_agrees_perfectly(tmp_path, records):
    result, check = score_with_proxy(records, tmp_path / "s.parquet", proxy="smollm2-135m",
                                     check=10, min_agreement=0.99, **{**STRONG, "template": None})
    assert check.agreement.n == 10 and check.passed
    assert check.agreement.spearman == pytest.approx(1.0)
    assert check.agreement.top_overlap["15%"] == 1.0
    assert result.table.num_rows == result.counts["scored"] > 10


def test_proxy_scores_the_whole_dataset_with_the_weak_settings(tmp_path, records):
    seen = []
    result, check = score_with_proxy(records, tmp_path / "s.parquet", proxy="smollm2-135m",
                                     check=12, proxy_options={"template": "none"}, on_check=seen.append, **STRONG)
    assert seen == [check] and check.min_agreement is None and check.passed
    assert result.scorers[0]["template"] == "none"  # the weak model's settings scored everything
    assert result.counts["input"] == read_dataset(records).n_records == 14
    written = json.loads((tmp_path / "s.proxy.json").read_text())
    assert written["agreement"]["n"] == 12 and written["weak"] == "smollm2-135m"
    assert -1 <= written["agreement"]["spearman"] < 1  # another template ranks differently


def test_disagreeing_proxy_stops_before_the_full_run(tmp_path, records):
    with pytest.raises(ValueError, match=r"disagrees with 'smollm2-135m': Spearman rho = .* below min_agreement=0.999"):
        score_with_proxy(records, tmp_path / "s.parquet", proxy="smollm2-135m", check=12,
                         min_agreement=0.999, proxy_options={"template": "none"}, **STRONG)
    assert not (tmp_path / "s.parquet").exists()
    assert json.loads((tmp_path / "s.proxy.json").read_text())["passed"] is False


@pytest.mark.parametrize("options, message", [(["--check", "1"], "check=1 should be >= 2"),
                                              (["--min-agreement", "2"], "min_agreement=2.0 should be")])
def test_cli_rejects_bad_proxy_settings_in_one_line(tmp_path, records, options, message):
    result = CliRunner().invoke(app, ["score", str(records), "-o", str(tmp_path / "s.parquet"),
                                      "--proxy", "smollm2-135m", *options])
    assert result.exit_code == 2
    assert message in one_line_error(result.output)


def test_cli_prints_the_agreement_then_scores(tmp_path, records):
    result = CliRunner().invoke(app, ["score", str(records), "-o", str(tmp_path / "s.parquet"),
                                      "--proxy", "smollm2-135m", "--check", "8", "--min-agreement", "0.9",
                                      "--device", "cpu", "--no-progress", "--max-length", "128"])
    assert result.exit_code == 0, result.output
    assert "proxy check: smollm2-135m (weak) vs smollm2-135m (strong), 8 sampled records" in result.output
    assert "Spearman rho = 1.0000" in result.output
    assert (tmp_path / "s.parquet").exists()
