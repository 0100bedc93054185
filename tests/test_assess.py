"""`sftpick assess`: dataset-level indicator means and spread, and the rule's estimate;
indicators that were not computed are reported missing, never as 0."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import sftpick
from sftpick.assess import assess, describe
from sftpick.cli import app
from tiny_reward import build_tiny_reward_model

FIXTURE = Path(__file__).parent / "fixtures" / "indicators_alpaca.json"  # see indicators_alpaca.LICENSE.md


def test_assess_without_a_reward_model_reports_it_missing(tmp_path):
    out = tmp_path / "assess.json"
    done = CliRunner().invoke(app, ["assess", str(FIXTURE), "--json", str(out), "--no-progress"])
    assert done.exit_code == 0, done.output
    assert "missing" in done.output
    report = json.loads(out.read_text())
    assert report["indicators"]["reward"] == {"missing": True, "reason": "no reward model given (--reward-model)"}
    assert report["rule"]["estimate"] is None and report["rule"]["missing"] == ["Rew (reward)"]
    assert set(report["indicators"]) >= {"len", "len_chars", "mtld", "knn_6"}
    assert report["counts"] == {"input": 30, "scored": 30, "rejected": 0}


def test_assess_means_and_rule_estimate_match_the_score_table(tmp_path):
    model = str(build_tiny_reward_model(tmp_path / "rm"))
    report = assess(FIXTURE, reward_model=model, progress=False)
    table = sftpick.score(FIXTURE, scorers=["len", "mtld", "knn_6", "reward"], reward_model=model,
                          progress=False).table.to_pandas()
    for column in ("len", "knn_6", "reward", "mtld"):
        stats = report["indicators"][column]
        assert stats["mean"] == pytest.approx(table[column].mean(), rel=1e-9)  # pandas skips NaN too
        assert stats["n"] + stats["nan"] == 30
    means = {c: report["indicators"][c]["mean"] for c in ("reward", "len", "knn_6")}
    expected = 1.0694 - 0.1498 * means["reward"] + 8.257e-5 * means["len"] - 0.9350 * means["knn_6"]
    assert report["rule"]["estimate"] == pytest.approx(expected, abs=1e-12)
    assert report["rule"]["missing"] == []


def test_describe_counts_nan_and_never_turns_missing_into_zero():
    stats = describe(np.array([1.0, 2.0, np.nan, 3.0]))
    assert stats["n"] == 3 and stats["nan"] == 1 and stats["mean"] == 2.0 and stats["std"] == 1.0
    assert stats["median"] == 2.0 and stats["min"] == 1.0 and stats["max"] == 3.0
    assert describe(np.array([np.nan, np.nan])) == {"missing": True, "reason": "no record has a value (2 NaN)"}
