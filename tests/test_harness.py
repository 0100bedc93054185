"""Benchmark accuracy through lm-evaluation-harness: a task of ours reading a local file, run
by the base model and every tuned model in memory; the base model's figure is the harness's
own on the same model, and a rerun runs the harness no more."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli_errors import one_line_error
from sftpick.cli import app

QUESTIONS = [("2 + 2 =", [" 4", " 5", " 22"], 0), ("The capital of France is", [" Paris", " Rome", " Oslo"], 0),
             ("3 * 3 =", [" 6", " 9", " 33"], 1), ("Water freezes at", [" 0 degrees", " 50 degrees"], 0)]


@pytest.fixture
def task_dir(tmp_path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    data = folder / "facts.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in QUESTIONS))
    (folder / "facts.yaml").write_text(
        f"task: sftpick_facts\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return folder


def test_every_arm_runs_the_tasks_and_the_base_model_s_figure_is_the_harness_s(tmp_path, task_dir, real_records_path):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from sftpick.models import load_causal_lm

    records = json.loads(real_records_path.read_text())
    (tmp_path / "subset.json").write_text(json.dumps(records[:4]))
    (tmp_path / "heldout.json").write_text(json.dumps(records[20:23]))
    args = ["eval", "--train", str(tmp_path / "subset.json"), "--eval-set", str(tmp_path / "heldout.json"),
            "--task", "sftpick_facts", "--task-dir", str(task_dir), "--max-steps", "1", "--batch-size", "4",
            "--max-length", "96", "--device", "cpu", "--no-progress", "-o", str(tmp_path / "eval")]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    lm = load_causal_lm("smollm2-135m", device="cpu", dtype="float32")
    direct = lm_eval.simple_evaluate(model=HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=8),
                                     tasks=["sftpick_facts"], task_manager=TaskManager(include_path=str(task_dir)))
    assert result["base"]["accuracy"]["sftpick_facts"]["acc"] == direct["results"]["sftpick_facts"]["acc,none"]
    accuracy = result["summary"][0]["accuracy"]["sftpick_facts"]["acc"]
    assert 0 <= accuracy <= 1 and accuracy * len(QUESTIONS) == round(accuracy * len(QUESTIONS))
    assert "lm-evaluation-harness" in done.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and all(arm["reused"] for arm in json.loads(
        (tmp_path / "eval" / "result.json").read_text())["arms"])
    assert len(list((tmp_path / "eval" / "harness").glob("*.json"))) == 2  # the base model's and the arm's


def test_an_unknown_task_fails_before_any_model_loads(tmp_path, task_dir, real_records_path):
    done = CliRunner().invoke(app, ["eval", "--train", str(real_records_path), "--eval-set", str(real_records_path),
                                    "--task", "sftpick_fact", "--task-dir", str(task_dir), "--model", "no-such",
                                    "-o", str(tmp_path / "e")])
    assert done.exit_code == 2
    assert "task 'sftpick_fact' is not an lm-evaluation-harness task here (did you mean sftpick_facts?)" in \
        one_line_error(done.output)
