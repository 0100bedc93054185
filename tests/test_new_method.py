"""A new method is one class and one registry line: a toy scorer and a toy strategy, declared
here and registered as every built-in one is, are driven through the Python API, the command
line and a config file with no edit anywhere else in sftpick, and give the same subset."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import sftpick
from cli_errors import one_line_error
from sftpick.cli import app
from sftpick.options import Component, option
from sftpick.scorers import SCORERS
from sftpick.scorers import register as register_scorer
from sftpick.selectors import SELECTORS, Selector
from sftpick.selectors import register as register_selector
from sftpick.selectors.ranking import score_order

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"


@dataclass(kw_only=True, eq=False)
class WordCount(Component):
    name = "toy_words"
    columns = ("toy_words",)

    weight: float = option(1.0, "toy_words: what each word of the response counts.", gt=0)

    def setup(self) -> None:
        self.check()

    def config(self) -> dict:
        return {"scorer": self.name, "weight": self.weight}

    def score(self, batch) -> dict:
        return {"toy_words": np.array([self.weight * len(e.response.split()) for e in batch])}


@dataclass(kw_only=True, eq=False)
class EveryOther(Selector):
    name = "toy_stride"

    stride: int = option(1, "toy_stride: take every STRIDE-th record of the ranking.", ge=1)

    def choose(self, table: pa.Table, budget: int, vectors) -> np.ndarray:
        return score_order(table, self.by, self.ascending)[:: self.stride][:budget]


@pytest.fixture
def toys():
    register_scorer(WordCount)
    register_selector(EveryOther)
    yield
    del SCORERS["toy_words"], SELECTORS["toy_stride"]


def subset(folder: Path) -> list[str]:
    return folder.joinpath("selected.jsonl").read_text().splitlines()


def test_a_new_scorer_and_strategy_run_from_the_api_the_cli_and_a_config_file(toys, tmp_path):
    sftpick.run(SAMPLE, tmp_path / "api", 6, scorers=["toy_words"], by="toy_words", strategy="toy_stride",
                stride=3, **{"toy_words.weight": 2.0}, progress=False)
    done = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "cli"), "--budget", "6",
                                    "--scorers", "toy_words", "--by", "toy_words", "--strategy", "toy_stride",
                                    "--stride", "3", "--toy-words.weight", "2", "--no-progress"])
    assert done.exit_code == 0, done.output
    config = tmp_path / "run.toml"
    config.write_text('budget = 6\nscorers = "toy_words"\nby = "toy_words"\nstrategy = "toy_stride"\n'
                      'progress = false\n[toy_words]\nweight = 2.0\n[toy_stride]\nstride = 3\n')
    done = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "config"), "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert subset(tmp_path / "api") == subset(tmp_path / "cli") == subset(tmp_path / "config")
    assert len(subset(tmp_path / "api")) == 6
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["config"]["toy_words"] == {"weight": 2.0} and manifest["config"]["toy_stride"] == {"stride": 3}
    assert manifest["scorers"] == [{"scorer": "toy_words", "weight": 2.0}]
    words = [len(json.loads(line)["output"].split()) for line in SAMPLE.read_text().splitlines()]
    ranked = np.lexsort((np.arange(len(words)), -np.array(words)))  # best first, ties by row
    expected = {int(r) for r in ranked[::3][:6]}
    chosen = {i for i, line in enumerate(SAMPLE.read_text().splitlines()) if line in subset(tmp_path / "api")}
    assert chosen == expected


def test_a_new_methods_options_are_checked_before_any_work(toys, tmp_path):
    done = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "out"), "--scorers", "toy_words",
                                    "--by", "toy_words", "--strategy", "toy_stride", "--stride", "0"])
    assert done.exit_code == 2 and "toy_stride: stride=0 should be >= 1" in one_line_error(done.output)
    done = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "out"), "--scorers", "toy_words",
                                    "--strid", "2"])
    assert done.exit_code == 2 and "did you mean --stride?" in one_line_error(done.output)
    with pytest.raises(ValueError, match=r"toy_words: weight=-1 should be > 0"):
        sftpick.score(SAMPLE, scorers=["toy_words"], weight=-1)
    assert not (tmp_path / "out").exists()
