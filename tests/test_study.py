"""`sftpick study`: one command scores the pool once, selects every method's subset from that
table, fine-tunes every arm with the same seeds and writes one leaderboard, which a rerun
rebuilds from the caches and the manifest replays."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli_errors import one_line_error
from sftpick.cli import app
from sftpick.study import parse_method


def test_methods_are_strategies_with_a_ranking_or_baselines():
    assert parse_method("kcenter") == {"name": "kcenter", "strategy": "kcenter", "by": None}
    assert parse_method("topk:len") == {"name": "topk-len", "strategy": "topk", "by": "len"}
    assert parse_method("random") == {"name": "random", "strategy": None, "by": None}
    with pytest.raises(ValueError, match="'kcentre' is neither a strategy"):
        parse_method("kcentre")


def test_a_study_ranks_every_method_against_random_and_replays(tmp_path, real_records_path):
    records = json.loads(real_records_path.read_text())
    (tmp_path / "pool.json").write_text(json.dumps(records[:18]))
    (tmp_path / "heldout.json").write_text(json.dumps(records[20:24]))
    args = ["study", str(tmp_path / "pool.json"), "-o", str(tmp_path / "study"), "--method", "topk:len",
            "--method", "kcenter", "--method", "random", "--budget", "4", "--scorers", "len",
            "--eval-set", str(tmp_path / "heldout.json"), "--seeds", "2", "--max-steps", "1", "--batch-size", "4",
            "--max-length", "96", "--device", "cpu", "--no-progress"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    board = json.loads((tmp_path / "study" / "leaderboard.json").read_text())
    methods = [row["method"] for row in board["rows"]]
    assert sorted(methods) == ["kcenter", "random", "topk-len"]
    losses = [row["loss"]["heldout"]["mean"] for row in board["rows"]]
    assert losses == sorted(losses)  # ordered by the measure, lower first
    for row in board["rows"]:
        assert row["records"] == 4 and row["seeds"] == 2 and row["training_seconds"] > 0
        if row["method"] != "random":  # same seeds as random: the paired interval is the one reported
            assert row["loss"]["heldout"]["interval_kind"] == "paired" and len(row["loss"]["heldout"]["interval"]) == 2
    assert "| method |" in (tmp_path / "study" / "leaderboard.md").read_text()
    selected = json.loads((tmp_path / "study" / "subsets" / "topk-len" / "selected.json").read_text())
    scores = pq.read_table(tmp_path / "study" / "scores.parquet").to_pydict()  # the one table every method used
    ranked = sorted(zip(scores["len"], scores["row"]), key=lambda pair: (-pair[0], pair[1]))
    assert selected == [records[row] for row in sorted(row for _, row in ranked[:4])]
    manifest = json.loads((tmp_path / "study" / "manifest.json").read_text())
    assert manifest["config"]["command"] == "study" and manifest["config"]["methods"] == ["topk:len", "kcenter",
                                                                                         "random"]
    again = CliRunner().invoke(app, ["study", "--config", str(tmp_path / "study" / "manifest.json")])
    assert again.exit_code == 0, again.output
    timeless = [{k: v for k, v in row.items() if k != "selection_seconds"} for row in board["rows"]]
    rebuilt = json.loads((tmp_path / "study" / "leaderboard.json").read_text())["rows"]
    assert [{k: v for k, v in row.items() if k != "selection_seconds"} for row in rebuilt] == timeless


def test_a_study_checks_its_methods_and_their_options_before_any_work(tmp_path, real_records_path):
    for extra, message in ((["--method", "kcentre"], "'kcentre' is neither a strategy"),
                           (["--method", "deita", "--tau", "2"], "tau=2.0 should be a cosine similarity")):
        done = CliRunner().invoke(app, ["study", str(real_records_path), "-o", str(tmp_path / "s"), "--eval-set",
                                        str(real_records_path), *extra])
        assert done.exit_code == 2 and message in one_line_error(done.output), done.output
    assert not (tmp_path / "s").exists()
