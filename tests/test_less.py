"""LESS end to end on the embedded SmolLM2-135M and real records, at a tiny scale (LoRA rank 4,
2 warmup epochs, 512-dimensional features, 64 tokens): the picks of `sftpick.run` equal the
LESS scores recomputed by explicit loops from the cached features; a second run trains and
computes nothing; a bad target fails before any model loads; picks are deterministic, ties
and duplicates give distinct picks, and a budget the candidates cannot meet is said."""
from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cli_errors import one_line_error
from safetensors.torch import load_file
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.embeddings import cached_vectors
from sftpick.errors import SftpickError
from sftpick.features.gradients import feature_config
from sftpick.features.store import Gradients
from sftpick.features.warmup import load_warmup
from sftpick.io import read_dataset
from sftpick.scorers.length import load_tokenizer
from sftpick.templates import render_prompt

pytest.importorskip("peft")

from sftpick.selectors.less import Less

MAX_LENGTH = 64
TINY = {"lora_rank": 4, "less_dim": 512, "warmup_epochs": 2, "warmup_fraction": 0.2, "warmup_batch_size": 2,
        "max_length": MAX_LENGTH, "template": "none", "device": "cpu"}
# Real records (the fixture's rows): general instructions, math word problems, tool-use prompts;
# without a template, rows 20 and 23 have prompts of 64 tokens or more: no gradient.
ROWS = (*range(12), 16, 17, 18, 20, 23, 25)
DUPLICATED = (12, 3)  # positions in ROWS copied at the end of the data: a math word problem, a short instruction
N_RECORDS = len(ROWS) + len(DUPLICATED)
TARGETS = [
    {"instruction": "Sam has 12 apples and gives 5 to Tom. How many apples does Sam have left?", "input": "",
     "output": "Sam has 12 - 5 = 7 apples left.", "task": "math"},
    {"instruction": "A box holds 8 pencils. How many pencils are in 3 boxes?", "input": "",
     "output": "3 boxes hold 3 * 8 = 24 pencils.", "task": "math"},
    {"instruction": "Write a short poem about the sea.", "input": "",
     "output": "The sea rolls in with silver light,\nit hums against the shore all night.", "task": "writing"},
    {"instruction": "Describe a quiet morning in a small town.", "input": "",
     "output": "Mist hangs over the square while the baker opens his shutters.", "task": "writing"},
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory, real_records_path):
    folder = tmp_path_factory.mktemp("less-data")
    records = json.loads(real_records_path.read_text())
    data = folder / "data.json"
    chosen = [records[row] for row in ROWS]
    data.write_text(json.dumps(chosen + [chosen[i] for i in DUPLICATED]))
    target = folder / "target.jsonl"
    target.write_text("".join(json.dumps(t) + "\n" for t in TARGETS))
    return data, target


def less_run(data, target, out, budget, **options):
    # target as text, as a config file gives it (a Path reached the report's json.dumps unconverted at 98d44df);
    # dedup none: the copies stay candidates, so LESS's own handling of duplicates is what is tested
    return sftpick.run(data, out, budget, strategy="less", target=str(target), target_subtask="task", progress=False,
                       dedup="none", **{**TINY, **options})[1]


@pytest.fixture(scope="module")
def first(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("less-run")
    return out, less_run(*files, out, 8)


def workdir(out):
    return out / "cache" / "strategies" / "gradients"


def cached(examples, checkpoint, preconditioning, out):
    """The features of `examples` as the run cached them; computing any is a failure."""
    def refuse(fresh):
        raise AssertionError(f"{len(fresh)} features were not in the cache")
    config = {**feature_config("smollm2-135m", checkpoint=checkpoint.id, lora_rank=4, preconditioning=preconditioning,
                               dim=512, template="none", max_length=MAX_LENGTH), "dtype": "float16"}
    return cached_vectors(examples, config, workdir(out) / "features", compute=refuse, store_name="gradients")


def test_picks_equal_the_less_scores_recomputed_by_loops_from_the_cached_features(files, first):
    out, selection = first
    data, target = files
    examples = read_dataset(data).examples
    targets = read_dataset(target).examples
    tokenizer = load_tokenizer("smollm2-135m")
    has_gradient = [len(tokenizer(render_prompt(e, "none"))["input_ids"]) < MAX_LENGTH for e in examples]
    assert 0 < sum(has_gradient) < len(examples)  # some prompts fill 64 tokens: those are left out

    (folder,) = workdir(out).glob("warmup-*")
    warm = load_warmup(folder)
    weights = [c.lr_mean for c in warm.checkpoints]
    weights = [w / sum(weights) for w in weights]
    # 3 of the 18 candidates with a gradient, batch 2: 2 steps an epoch, lr 2e-5 decaying linearly over 4 steps
    assert len(warm.rows) == 3 and [c.step for c in warm.checkpoints] == [2, 4]
    assert weights == pytest.approx([0.7, 0.3])  # epoch means: (4+3)/8 and (2+1)/8 of 2e-5
    candidates = [e for e, ok in zip(examples, has_gradient) if ok]
    train = [cached(candidates, c, "adam", out) for c in warm.checkpoints]
    grads = [cached(targets, c, "sgd", out) for c in warm.checkpoints]

    def cos(u, v):
        return float(np.dot(u.astype(np.float64), v)) / (np.linalg.norm(u.astype(np.float64)) * np.linalg.norm(v))

    scores = {}
    rows = [i for i, ok in enumerate(has_gradient) if ok]
    for k, row in enumerate(rows):
        best = -math.inf
        for task in ("math", "writing"):
            members = [j for j, t in enumerate(TARGETS) if t["task"] == task]
            influence = [sum(w * cos(train[c][k], grads[c][j]) for c, w in enumerate(weights)) for j in members]
            best = max(best, sum(influence) / len(influence))
        scores[row] = best
    expected = sorted(scores, key=lambda row: (-scores[row], row))[:8]
    assert selection.order.tolist() == expected

    stats = selection.stats
    assert stats["excluded"] == len(examples) - len(rows) and stats["records_scored"] == len(rows)
    unique = len({examples[row].content_hash for row in rows})  # a copy's feature is computed once
    assert stats["warmup_trained"] and stats["features_computed"] == 2 * unique + 2 * len(TARGETS)
    assert [c["weight"] for c in stats["checkpoints"]] == pytest.approx(weights)
    assert stats["feature_dim"] == 512 and stats["targets"] == 4 and stats["subtasks"] == 2
    assert {"load", "warmup", "train_features", "target_features", "score"} <= set(stats["seconds"])
    assert any(f"{stats['excluded']} of {len(examples)} candidates left out" in note for note in selection.notes)
    store = next((workdir(out) / "features").glob("gradients-*/shard-*.parquet"))
    assert pq.read_schema(store).field("vector").type.value_type == pa.float16()


def test_duplicates_tie_and_go_to_the_lower_position(first):
    _, selection = first
    order = selection.order.tolist()
    n = len(ROWS)
    for copy, row in enumerate(DUPLICATED):  # same content: one cached feature, the same score
        if row in order and n + copy in order:
            assert order.index(row) < order.index(n + copy)
    assert len(set(order)) == len(order) == 8


def test_a_second_run_trains_and_computes_nothing_and_keeps_the_ranking(files, first):
    out, selection = first
    watched = sorted(p for p in workdir(out).rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in watched]
    again = less_run(*files, out, 5)
    assert again.stats["warmup_trained"] is False and again.stats["features_computed"] == 0
    assert sorted(p for p in workdir(out).rglob("*") if p.is_file()) == watched
    assert [p.stat().st_mtime_ns for p in watched] == stamps
    assert again.order.tolist() == selection.order.tolist()[:5]


def test_a_budget_above_the_candidates_with_a_gradient_is_said(files, first):
    out, _ = first
    big = less_run(*files, out, 25)
    scored = big.stats["records_scored"]
    assert len(big.order) == scored < N_RECORDS and len(set(big.order.tolist())) == scored
    assert any(f"selected {scored} of {N_RECORDS}" in note for note in big.notes)


def test_a_fresh_warmup_and_fresh_features_are_the_same(files, first, tmp_path):
    """Deterministic for the seeds: the warmup trained again in another folder saves the same
    weights and Adam state, and features computed again equal the cached ones up to float16
    storage: the cached ones came from batches of other records, and another batch shape sums
    fp32 products in another order (measured: at most 2 float16 steps, 1.2e-4)."""
    out, _ = first
    examples = read_dataset(files[0]).examples
    selector = Less(target=files[1], **TINY)
    selector.check()
    gradients = Gradients(selector.gradient_settings(), tmp_path)
    encoded, _ = gradients.encode(examples)
    kept = [i for i, e in enumerate(encoded) if e is not None]
    warm, _ = gradients.warmup([examples[i] for i in kept])
    (before,) = workdir(out).glob("warmup-*")
    assert warm.trained and warm.folder.name == before.name
    for name in ("adapter_model.safetensors", "optimizer.safetensors"):
        old, new = load_file(before / "epoch-2" / name), load_file(warm.folder / "epoch-2" / name)
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old), name
    some = kept[:3]
    fresh = gradients.features([examples[i] for i in some], [encoded[i] for i in some], warm.checkpoints[-1], "adam")
    assert gradients.computed == 3
    again = cached([examples[i] for i in some], warm.checkpoints[-1], "adam", out)
    np.testing.assert_allclose(fresh, again, rtol=0, atol=5e-4)
    assert (np.sum(fresh * again, axis=1) > 0.9999).all()  # unit vectors: the same direction


@pytest.fixture
def no_model(monkeypatch):
    """Any model or tokenizer load is a failure."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    for where in ("sftpick.features.store.load_causal_lm", "sftpick.models.load_causal_lm",
                  "sftpick.scorers.length.load_tokenizer"):
        monkeypatch.setattr(where, refuse)


@pytest.mark.parametrize("kind, expected", [
    ("missing", "no such file"), ("empty", "holds no records"), ("unusable", "no target example"), ("csv", ".csv"), ("none", "pass --target FILE"),
    ("subtask", "has no field 'category'")])
def test_a_bad_target_fails_in_one_line_before_any_model_loads(kind, expected, files, tmp_path, no_model):
    data, target = files
    given = {"missing": tmp_path / "nowhere.jsonl", "empty": tmp_path / "empty.jsonl", "csv": tmp_path / "t.csv",
             "none": None, "subtask": target, "unusable": tmp_path / "unusable.jsonl"}[kind]
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "unusable.jsonl").write_text('{"instruction": "Say hi.", "input": "", "output": ""}\n')  # no response
    (tmp_path / "t.csv").write_text("instruction,output\nhi,there\n")
    args = ["run", str(data), "-o", str(tmp_path / "out"), "--strategy", "less", "--budget", "3", "--no-progress"]
    args += ["--target", str(given)] if given else []
    args += ["--target-subtask", "category"] if kind == "subtask" else []
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert expected.lower() in one_line_error(done.output).lower()
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_options_are_checked_before_any_model_loads(files, tmp_path, no_model):
    data, target = files
    for bad, expected in [({"preconditioning": "sgd"}, "adam, adam-code"), ({"less_dim": 0}, "less_dim=0"),
                          ({"model": str(tmp_path / "none.gguf")}, "does not exist")]:
        with pytest.raises(SftpickError, match=expected):
            less_run(data, target, tmp_path / "out", 3, **bad)
