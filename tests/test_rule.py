"""Instruction Mining's rule: the default file against the paper's formula, the `rule`
column from real scores, user rule files, select by rule, and refitting by least squares."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.scorers.rule import Rule, Term, fit_rule, load_rule
from tiny_reward import build_tiny_reward_model

FIXTURE = Path(__file__).parent / "fixtures" / "indicators_alpaca.json"  # see indicators_alpaca.LICENSE.md


def paper_formula(rew, length, knn6):
    return 1.0694 - 0.1498 * rew + 8.257e-5 * length - 0.9350 * knn6


def test_default_rule_is_the_papers_formula():
    rng = np.random.default_rng(0)
    columns = {"reward": rng.normal(size=50), "len": rng.integers(1, 2000, 50), "knn_6": rng.uniform(0, 2, 50)}
    rule = load_rule()
    assert [t.indicator for t in rule.terms] == ["Rew", "Len", "Knn6"]
    np.testing.assert_allclose(rule.apply(columns), paper_formula(columns["reward"], columns["len"], columns["knn_6"]),
                               rtol=0, atol=1e-12)
    columns["reward"][4] = np.nan
    assert np.isnan(rule.apply(columns)[4]) and not np.isnan(rule.apply(columns)[5])


def test_rule_column_from_real_scores_and_select_by_rule(tmp_path):
    model = build_tiny_reward_model(tmp_path / "rm")
    out = tmp_path / "scores.parquet"
    result = sftpick.score(FIXTURE, out, scorers=["len", "knn_6", "reward", "rule"], reward_model=str(model),
                           progress=False)
    table = pq.read_table(out).to_pandas()
    np.testing.assert_allclose(table["rule"], paper_formula(table["reward"], table["len"], table["knn_6"]), atol=1e-12)
    assert result.scorers[-1]["scorer"] == "rule" and result.scorers[-1]["intercept"] == 1.0694
    selection = sftpick.select(out, 5, by="rule", ascending=True)
    np.testing.assert_array_equal(selection.rows, np.sort(table.nsmallest(5, "rule")["row"].to_numpy()))
    runner = CliRunner()
    subset = tmp_path / "subset.json"
    done = runner.invoke(app, ["select", str(FIXTURE), "--scores", str(out), "--by", "rule", "--ascending",
                               "--budget", "5", "-o", str(subset)])
    assert done.exit_code == 0, done.output
    chosen = json.loads(subset.read_text())
    records = json.loads(FIXTURE.read_text())
    assert chosen == [records[r] for r in selection.rows]


def test_user_rule_file_with_other_columns(tmp_path):
    rule_file = tmp_path / "mine.json"
    rule_file.write_text(json.dumps({"intercept": 2.0, "terms": [
        {"indicator": "MTLD", "column": "mtld", "coefficient": -0.01},
        {"indicator": "Chars", "column": "len_chars", "coefficient": 0.001}]}))
    result = sftpick.score(FIXTURE, scorers=["len", "mtld", "rule"], rule_file=str(rule_file), progress=False)
    table = result.table.to_pandas()
    np.testing.assert_allclose(table["rule"], 2.0 - 0.01 * table["mtld"] + 0.001 * table["len_chars"], atol=1e-12)
    assert table["rule"].isna().sum() == table["mtld"].isna().sum() > 0  # undefined MTLD stays missing


def test_rule_refuses_missing_indicators_before_scoring():
    with pytest.raises(ValueError, match="scorer 'rule' needs the columns reward, knn_6"):
        sftpick.score(FIXTURE, scorers=["len", "rule"], progress=False)


def test_bad_rule_file_says_what_is_expected(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"intercept": 1.0, "terms": [{"column": "len"}]}))
    with pytest.raises(ValueError, match="expected JSON with 'intercept' and 'terms'"):
        load_rule(bad)


def _synthetic_experiments(n: int, noise: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Datasets' indicator means, and the eval loss a known rule gives them (plus noise)."""
    rng = np.random.default_rng(seed)
    rew, length, knn6 = rng.normal(0, 1.5, n), rng.uniform(50, 900, n), rng.uniform(0.6, 1.2, n)
    log_loss = paper_formula(rew, length, knn6) + noise * rng.normal(size=n)
    return {"dataset": [f"d{i}" for i in range(n)], "reward": rew, "len": length, "knn_6": knn6,
            "loss": np.exp(log_loss)}


def test_fit_recovers_known_coefficients_exactly_without_noise():
    data = _synthetic_experiments(12, noise=0.0)
    fit = fit_rule({k: v for k, v in data.items() if k != "dataset"}, "loss")
    assert fit.rule.intercept == pytest.approx(1.0694, abs=1e-9)
    assert [t.coefficient for t in fit.rule.terms] == pytest.approx([-0.1498, 8.257e-5, -0.9350], abs=1e-9)
    assert fit.r_squared == pytest.approx(1.0)


def test_fit_from_csv_with_noise_and_the_cli(tmp_path):
    data = _synthetic_experiments(200, noise=0.01, seed=1)
    csv = tmp_path / "experiments.csv"
    lines = ["dataset,reward,len,knn_6,loss"] + [",".join(str(data[c][i]) for c in data) for i in range(200)]
    csv.write_text("\n".join(lines) + "\n")
    fit = fit_rule(csv)  # the text column `dataset` is a label, not an indicator
    assert [t.column for t in fit.rule.terms] == ["reward", "len", "knn_6"]
    assert [t.coefficient for t in fit.rule.terms] == pytest.approx([-0.1498, 8.257e-5, -0.9350], rel=0.05)
    assert fit.rule.intercept == pytest.approx(1.0694, abs=0.02)
    assert fit.r_squared > 0.99 and max(fit.p_values.values()) < 1e-6
    out = tmp_path / "fitted.json"
    done = CliRunner().invoke(app, ["rule", "fit", str(csv), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert "R² = 0.99" in done.output and "p-value" in done.output and "knn_6" in done.output
    assert load_rule(out) == Rule(fit.rule.intercept, fit.rule.terms, "fitted", "", "log loss")


def test_fit_needs_more_experiments_than_coefficients():
    data = _synthetic_experiments(4, noise=0.0)
    with pytest.raises(ValueError, match="4 experiments cannot fit 3 coefficients and an intercept; need at least 5"):
        fit_rule({k: v for k, v in data.items() if k != "dataset"}, "loss")
    with pytest.raises(ValueError, match="target='eval_loss' is not a column"):
        fit_rule({"a": [1.0, 2.0]}, "eval_loss")


def test_rule_dataclass_round_trips_through_json(tmp_path):
    rule = Rule(0.5, (Term("X", "x", 2.0),), "r")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(rule.to_dict()))
    assert load_rule(path) == rule
