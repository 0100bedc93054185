"""Instruction Mining's experiments: the dataset draws (sizes, mixtures, capacities,
seeds), and a tiny real run whose CSV `rule fit` reads, resumed without refitting."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import sftpick.api as api
from sftpick.cli import app
from sftpick.scorers.rule import fit_rule, load_rule
from sftpick.train.experiments import draw_datasets
from cli_errors import one_line_error


def test_draws_vary_in_size_and_mixture_within_the_sources():
    caps = {"a": 50, "b": 500, "c": 30}
    draws = draw_datasets(caps, 40, min_size=20, max_size=200, seed=7)
    sizes = np.array([d.size for d in draws])
    assert sizes.min() >= 20 and sizes.max() <= 200 and len(set(sizes)) > 20
    for draw in draws:
        assert sum(draw.counts.values()) == draw.size
        for name, rows in draw.rows.items():
            assert len(rows) == draw.counts[name] <= caps[name]
            assert len(set(rows)) == len(rows) and np.all(np.diff(rows) > 0) and rows.max(initial=0) < caps[name]
    shares = np.array([[d.counts[k] / d.size for k in caps] for d in draws])
    assert shares.std(axis=0).min() > 0.1  # mixtures differ from dataset to dataset
    assert shares[:, 2].max() < 1  # a source never gives more than it has
    again = draw_datasets(caps, 45, min_size=20, max_size=200, seed=7)
    assert [d.mixture for d in again[:40]] == [d.mixture for d in draws]  # more datasets keep the first ones
    other = draw_datasets(caps, 40, min_size=20, max_size=200, seed=8)
    assert [d.mixture for d in other] != [d.mixture for d in draws]


def test_a_draw_larger_than_a_source_takes_the_rest_from_the_others():
    draws = draw_datasets({"small": 3, "big": 100}, 30, min_size=60, max_size=80, seed=0)
    assert all(d.counts["small"] <= 3 and d.size >= 60 for d in draws)
    whole = draw_datasets({"x": 5, "y": 4}, 3, min_size=8, max_size=50, seed=1)
    assert all(d.size == 9 and d.counts == {"x": 5, "y": 4} for d in whole)  # cut to what the pool has


def test_experiments_csv_feeds_rule_fit_and_resumes(tmp_path, real_records_path):
    records = json.loads(real_records_path.read_text())
    pools = [tmp_path / "alpaca.json", tmp_path / "other.json"]
    pools[0].write_text(json.dumps(records[:10]))
    pools[1].write_text(json.dumps(records[10:20]))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps(records[20:26]))
    settings = tmp_path / "train.json"
    settings.write_text(json.dumps({"warmup": 0.0, "lr": 1e-4, "template": "none"}))
    csv = tmp_path / "experiments.csv"
    args = ["rule", "experiments", *map(str, pools), "--eval-set", str(heldout), "--datasets", "5",
            "--min-size", "8", "--max-size", "12", "--config", str(settings), "--max-steps", "1",
            "--max-length", "64", "--batch-size", "4", "--device", "cpu", "--no-progress", "-o", str(csv)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    lines = csv.read_text().splitlines()
    assert lines[0] == "dataset,mixture,len,mtld,knn_6,loss" and len(lines) == 6
    runs = tmp_path / "experiments.runs"
    losses = [json.loads((runs / f"d00{i}.json").read_text())["fine_tune"]["eval_loss"]["heldout"] for i in range(5)]
    assert len(set(losses)) == 5  # each dataset tuned its own model
    manifest = json.loads((runs / "manifest.json").read_text())
    base = manifest["base"]["eval_loss"]["heldout"]
    assert all(loss != base for loss in losses)
    assert manifest["draws"]["datasets"] == 5 and set(manifest["sources"]) == {"alpaca", "other"}
    drawn = [json.loads(line) for line in (runs / "d000.jsonl").read_text().splitlines()]
    assert all(r in records[:20] for r in drawn)

    fit = fit_rule(csv)  # the text columns (dataset, mixture) are labels
    assert [t.column for t in fit.rule.terms] == ["len", "mtld", "knn_6"] and fit.n_experiments == 5
    out = tmp_path / "rule.json"
    fitted = CliRunner().invoke(app, ["rule", "fit", str(csv), "-o", str(out)])
    assert fitted.exit_code == 0, fitted.output
    assert load_rule(out).columns == ["len", "mtld", "knn_6"]

    before = csv.read_text()
    rows = api.rule_experiments(pools, csv, eval_set=heldout, datasets=5, min_size=8, max_size=12,
                                config={"warmup": 0.0, "lr": 1e-4, "template": "none", "max_steps": 1,
                                        "max_length": 64, "batch_size": 4}, device="cpu", progress=False)
    assert csv.read_text() == before and len(rows) == 5
    assert all(json.loads((runs / f"d00{i}.json").read_text())["fine_tune"]["reused"] for i in range(5))


def test_experiments_refuse_bad_options_before_loading(tmp_path, real_records_path):
    done = CliRunner().invoke(app, ["rule", "experiments", str(real_records_path), "--eval-set",
                                    str(real_records_path), "--min-size", "5", "-o", str(tmp_path / "e.csv")])
    assert done.exit_code == 2 and "min_size=5 should be >= 8" in one_line_error(done.output)
    with pytest.raises(ValueError, match="max_size=9 should be >= min_size=10"):
        api.rule_experiments([real_records_path], tmp_path / "e.csv", eval_set=real_records_path, min_size=10,
                             max_size=9)
