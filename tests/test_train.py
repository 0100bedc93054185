"""The evaluation loop on the real embedded SmolLM2-135M and real records, at a tiny scale
(a few records, a few steps): training lowers the loss, the held-out loss matches a
per-record computation, a seed reproduces a run, a killed run resumes, overlap is refused."""
from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np
import pytest
import torch
from processes import kill_when
from typer.testing import CliRunner

import sftpick.api as api
from sftpick.cli import app
from sftpick.models import load_causal_lm
from sftpick.templates import render_prompt
from sftpick.train.data import encode
from sftpick.train.evaluate import eval_loss
from sftpick.train.finetune import TrainConfig, fine_tune
from sftpick.train.loop import OverlapError
from cli_errors import one_line_error

QUICK = {"max_length": 96, "batch_size": 4, "lr": 1e-4, "warmup": 0.0, "template": "alpaca"}


@pytest.fixture(scope="module")
def lm():
    return load_causal_lm(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def records(real_records_path):
    return json.loads(real_records_path.read_text())


def write(path, records):
    path.write_text(json.dumps(records))
    return path


def encoded(lm, examples, max_length=96, template="alpaca"):
    items, reasons = encode(examples, lm.tokenizer, template, max_length)
    assert all(r is None for r in reasons), reasons
    return items


def test_training_lowers_the_loss_on_its_own_records(lm, real_dataset):
    train = encoded(lm, real_dataset.examples[:4])
    pad = lm.tokenizer.pad_token_id
    base = eval_loss(lm.model, train, pad_id=pad, token_budget=1024)
    tuned = fine_tune(copy.deepcopy(lm.model), lm.tokenizer, train,
                      TrainConfig(**QUICK, epochs=3), progress=False)
    assert tuned.steps == 3 and len(tuned.losses) == 3
    # One batch holds every record, so the first step's loss is the base model's loss on them.
    assert tuned.losses[0] == pytest.approx(base, rel=1e-4)
    assert tuned.losses[-1] < tuned.losses[0]
    after = eval_loss(tuned.model, train, pad_id=pad, token_budget=1024)
    assert after < base - 0.1
    assert tuned.tokens_seen == 3 * sum(len(e.ids) for e in train)
    assert tuned.peak_memory_mib > 0


def test_heldout_loss_equals_a_per_record_computation(lm, real_dataset):
    """Token-weighted mean of the response cross-entropy, computed here one record at a
    time with transformers' own `labels` loss."""
    examples = real_dataset.examples[20:26]
    tokenizer, max_length = lm.tokenizer, 128
    total, count = 0.0, 0
    for example in examples:
        prompt = render_prompt(example, "alpaca")
        n_prompt = len(tokenizer(prompt)["input_ids"])
        ids = (tokenizer(prompt + example.response)["input_ids"] + [tokenizer.eos_token_id])[:max_length]
        labels = torch.tensor([[-100] * n_prompt + ids[n_prompt:]])
        with torch.no_grad():
            loss = lm.model(torch.tensor([ids]), labels=labels).loss.item()
        n = len(ids) - n_prompt - 1 + 1  # labels shift by one: the first response token is predicted by the prompt's last
        total, count = total + loss * n, count + n
    ours = eval_loss(lm.model, encoded(lm, examples, max_length), pad_id=tokenizer.pad_token_id, token_budget=256)
    assert ours == pytest.approx(total / count, rel=1e-4)


def test_a_seed_reproduces_a_fine_tune_and_another_seed_does_not(lm, real_dataset):
    train = encoded(lm, real_dataset.examples[:6], max_length=64)
    config = TrainConfig(**{**QUICK, "max_length": 64, "batch_size": 2}, max_steps=2, seed=3)
    runs = [fine_tune(copy.deepcopy(lm.model), lm.tokenizer, train, config, progress=False) for _ in range(2)]
    other = fine_tune(copy.deepcopy(lm.model), lm.tokenizer, train, TrainConfig(**{**config.to_dict(), "seed": 4}),
                      progress=False)
    assert runs[0].losses == runs[1].losses
    first, second = (dict(r.model.named_parameters())["model.norm.weight"] for r in runs)
    assert torch.equal(first, second)
    assert other.losses != runs[0].losses  # another shuffle: other records in the first batch


def test_lora_trains_adapters_and_merges_them(lm, real_dataset):
    pytest.importorskip("peft")
    train = encoded(lm, real_dataset.examples[:4])
    tuned = fine_tune(copy.deepcopy(lm.model), lm.tokenizer, train,
                      TrainConfig(**{**QUICK, "lr": 1e-3}, lora_rank=4, max_steps=2), progress=False)
    assert type(tuned.model) is type(lm.model)  # merged back into a plain model
    assert tuned.losses[-1] < tuned.losses[0]


def test_eval_writes_results_table_and_manifest(tmp_path, records):
    train = write(tmp_path / "subset.json", records[:4])
    pool = write(tmp_path / "pool.json", records[:20])
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(r) + "\n" for r in records[20:24]))
    out = tmp_path / "eval"
    settings = tmp_path / "train.json"
    settings.write_text(json.dumps({"lr": 1e-4, "warmup": 0.0, "max_length": 32}))  # flags override the file
    done = CliRunner().invoke(app, ["eval", "--train", str(train), "--baseline", "longest", "--pool", str(pool),
                                    "--eval-set", str(heldout), "--eval-set", str(train), "--allow-overlap",
                                    "--config", str(settings), "--max-length", "96", "--max-steps", "1",
                                    "--batch-size", "4", "--device", "cpu", "--no-progress", "-o", str(out)],
                              env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    result = json.loads((out / "result.json").read_text())
    assert set(result["base"]["eval_loss"]) == {"heldout", "subset"}
    assert [(a["name"], a["kind"], a["seed"], a["n_records"]) for a in result["arms"]] == [
        ("subset", "file", 0, 4), ("longest", "longest", 0, 4)]
    assert result["eval_sets"]["subset"]["overlap"] == 4 and result["eval_sets"]["heldout"]["overlap"] == 0
    for arm in result["arms"]:
        assert set(arm) >= {"name", "kind", "seed", "n_records", "n_tokens", "eval_loss", "train_loss_first",
                            "train_loss_last", "seconds"}
    assert result["arms"][1]["n_response_tokens"] >= result["arms"][0]["n_response_tokens"]
    # the model tuned on `subset` fits `subset` better than the base model does
    assert result["arms"][0]["eval_loss"]["subset"] < result["base"]["eval_loss"]["subset"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["train_files"]["subset"]["sha256"] == api.read_dataset(train).sha256
    assert manifest["model"]["revision"].startswith("gguf-sha256:")
    training = {name: manifest["config"][name] for name in TrainConfig().to_dict()}
    assert training == {**TrainConfig().to_dict(), "lr": 1e-4, "warmup": 0.0, "max_length": 96,
                        "max_steps": 1, "batch_size": 4}
    assert manifest["config"]["command"] == "eval" and manifest["config"]["baselines"] == ["longest"]
    assert manifest["config"]["train"] == [str(train)] and manifest["config"]["eval_sets"] == [str(heldout), str(train)]
    shown = done.output
    assert "held-out loss (mean response-token cross-entropy" in shown and "base model" in shown
    assert (out / "result.html").read_text().count("<html") == 1
    # the manifest is a config: the same command replayed from it, into another folder
    replay = CliRunner().invoke(app, ["eval", "--config", str(out / "manifest.json"), "-o", str(tmp_path / "again")])
    assert replay.exit_code == 0, replay.output
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())["config"]
    assert {**again, "output_dir": None} == {**manifest["config"], "output_dir": None}
    assert [(a["name"], a["n_records"]) for a in json.loads((tmp_path / "again" / "result.json").read_text())["arms"]] \
        == [(a["name"], a["n_records"]) for a in result["arms"]]


def test_overlap_is_an_error_naming_the_record(tmp_path, records):
    """With decontamination off (by default the copy would be dropped from the training file)."""
    train = write(tmp_path / "subset.json", records[:4])
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(r) + "\n" for r in [records[22], records[2]]))
    with pytest.raises(OverlapError, match=r"heldout.jsonl row 1, line 2 also appears in arm 'subset' "
                                           r"\(seed 0, .*subset.json row 2, line 1\); 1 of the 2 eval records"):
        api.evaluate([train], tmp_path / "eval", eval_sets=[heldout], config={"max_length": 96}, device="cpu",
                     decontaminate=False)
    assert not (tmp_path / "eval" / "arms").exists()  # refused before any work


@pytest.mark.parametrize("args, message", [
    (["--baseline", "shortest"], "unknown baseline 'shortest'; valid baselines: random, longest, full"),
    (["--seeds", "0"], "seeds=0 should be >= 1"),
    (["--seeds", "2", "--fixed-seeds", "3"], "fixed_seeds=3 should be between 1 and seeds=2"),
    (["--baseline", "random"], "--baseline random needs --pool"),
    (["--lr", "-1"], "lr=-1.0 should be > 0"),
    (["--pool", "missing.json", "--baseline", "full"], "missing.json: no such file"),
])
def test_bad_options_fail_before_any_model_loads(tmp_path, records, args, message):
    train = write(tmp_path / "subset.json", records[:4])
    done = CliRunner().invoke(app, ["eval", "--train", str(train), "--eval-set", str(train), "-o",
                                    str(tmp_path / "eval"), "--model", "no-such-model", *args])
    assert done.exit_code == 2, done.output
    assert message in one_line_error(done.output)


def test_killed_eval_finishes_only_the_missing_arms(tmp_path, records):
    train = write(tmp_path / "subset.json", records[:4])
    pool = write(tmp_path / "pool.json", records[:20])
    heldout = write(tmp_path / "heldout.json", records[20:23])
    out = tmp_path / "eval"
    options = ["--max-length", "64", "--max-steps", "1", "--batch-size", "4", "--template", "none"]
    command = [sys.executable, "-m", "sftpick.cli", "eval", "--train", str(train), "--baseline", "random",
               "--pool", str(pool), "--eval-set", str(heldout), "--device", "cpu",
               "--no-progress", "-o", str(out), *options]
    kill_when(command, lambda: any(not p.name.startswith("base-") for p in (out / "arms").glob("*.json")),
              what="a fine-tune finished", env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    finished = {p.name for p in (out / "arms").glob("*.json") if not p.name.startswith("base-")}
    assert len(finished) == 1 and not (out / "result.json").exists()
    first = {p.name: p.read_text() for p in (out / "arms").glob("*.json")}

    result = api.evaluate([train], out, eval_sets=[heldout], baselines=["random"], pool=pool,
                          config={"max_length": 64, "max_steps": 1, "batch_size": 4, "template": "none"},
                          device="cpu", progress=False)
    reused = [a for a in result["arms"] if a["reused"]]
    assert {f"{a['key']}.json" for a in reused} == finished
    assert len(result["arms"]) == 2 and len(reused) == 1
    assert {name: (out / "arms" / name).read_text() for name in first} == first  # never rewritten
    assert [(a["name"], a["seed"]) for a in result["arms"]] == [("subset", 0), ("random", 0)]
    again = api.evaluate([train], out, eval_sets=[heldout], baselines=["random"], pool=pool,
                         config={"max_length": 64, "max_steps": 1, "batch_size": 4, "template": "none"},
                         device="cpu", progress=False)
    assert all(a["reused"] for a in again["arms"])
    np.testing.assert_array_equal([a["eval_loss"]["heldout"] for a in again["arms"]],
                                  [a["eval_loss"]["heldout"] for a in result["arms"]])


def test_difference_to_random_is_welchs_interval_over_seeds():
    from scipy import stats

    from sftpick.train.summary import format_diff, summarize

    ifd, random = [1.50, 1.52, 1.47], [1.60, 1.58, 1.65, 1.61]
    arms = [{"name": name, "kind": kind, "seed": seed, "n_records": 10, "n_response_tokens": 100,
             "eval_loss": {"heldout": value}}
            for name, kind, values in [("ifd", "file", ifd), ("random", "random", random)]
            for seed, value in enumerate(values)]
    rows = summarize({"base": {"eval_loss": {"heldout": 2.0}}, "arms": arms})
    cell = rows[0]["eval"]["heldout"]
    expected = stats.ttest_ind(ifd, random, equal_var=False).confidence_interval(0.95)
    assert cell["vs_random"] == pytest.approx(np.mean(ifd) - np.mean(random))
    assert cell["vs_random_ci95"] == pytest.approx([expected.low, expected.high])
    assert format_diff(cell).startswith("-0.1") and format_diff(rows[1]["eval"]["heldout"]).startswith("reference")
    single = summarize({"base": {"eval_loss": {"heldout": 2.0}}, "arms": [arms[0], arms[3]]})
    assert single[0]["eval"]["heldout"]["vs_random_ci95"] is None  # one random seed: no interval
    once = summarize({"base": {"eval_loss": {"heldout": 2.0}}, "arms": arms[:1] + arms[3:]})[0]["eval"]["heldout"]
    half = stats.t.ppf(0.975, 3) * np.std(random, ddof=1) * np.sqrt(1 + 1 / 4)  # random's spread, as a new draw's
    assert once["vs_random_ci95"] == pytest.approx([ifd[0] - np.mean(random) - half, ifd[0] - np.mean(random) + half])


def test_fixed_arms_are_fine_tuned_fixed_seeds_times_and_random_every_seed():
    from sftpick.train.arms import Source, build_arms

    pool = Source("pool.jsonl", "", "alpaca", 10, list(range(10)), [])
    named = [("ifd", Source("ifd.jsonl", "", "alpaca", 2, [0, 1], []))]
    arms = build_arms(named, ["random", "full"], pool, [0, 1, 2], 2, fixed_seeds=1)
    assert [(a.name, a.seed) for a in arms] == [("ifd", 0), ("random", 0), ("full", 0), ("random", 1), ("random", 2)]
    assert len({tuple(a.rows) for a in arms if a.name == "random"}) == 3
    assert [(a.name, a.seed) for a in build_arms(named, ["random"], pool, [0, 1], 2)] == [
        ("ifd", 0), ("random", 0), ("ifd", 1), ("random", 1)]
