"""TAGCOS end to end on the embedded SmolLM2-135M and real records, at a tiny scale (LoRA rank 4,
2 warmup epochs, 512-dimensional features, 64 tokens, 3 clusters): the picks of `sftpick.run`
equal K-means and `omp.tagcos_select` recomputed from the cached features (their lr-weighted
sum built by an explicit loop); a second run trains and computes nothing; the budget is met
exactly, or the shortfall said; duplicates give distinct picks; bad options fail before any
model loads."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cli_errors import one_line_error
from sklearn.cluster import KMeans
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.embeddings import cached_vectors
from sftpick.errors import SftpickError
from sftpick.features.gradients import feature_config
from sftpick.features.store import Gradients
from sftpick.features.warmup import load_adam_state, load_warmup
from sftpick.io import read_dataset
from sftpick.scorers.length import load_tokenizer
from sftpick.selectors.omp import cluster_quotas, tagcos_select
from sftpick.templates import render_prompt

pytest.importorskip("peft")

from sftpick.selectors.tagcos import Tagcos

MAX_LENGTH = 64
TINY = {"lora_rank": 4, "less_dim": 512, "warmup_epochs": 2, "warmup_fraction": 0.2, "warmup_batch_size": 2,
        "max_length": MAX_LENGTH, "template": "none", "clusters": 3, "device": "cpu"}
# Real records (the fixture's rows): general instructions, math word problems, tool-use prompts;
# without a template, rows 20 and 23 have prompts of 64 tokens or more: no gradient.
ROWS = (*range(12), 16, 17, 18, 20, 23, 25)
DUPLICATED = (12, 3)  # positions in ROWS copied at the end of the data
N_RECORDS = len(ROWS) + len(DUPLICATED)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, real_records_path):
    records = json.loads(real_records_path.read_text())
    chosen = [records[row] for row in ROWS]
    path = tmp_path_factory.mktemp("tagcos-data") / "data.json"
    path.write_text(json.dumps(chosen + [chosen[i] for i in DUPLICATED]))
    return path


def tagcos_run(data, out, budget, **options):
    # dedup none: the copies stay candidates, so TAGCOS's own handling of duplicates is what is tested
    return sftpick.run(data, out, budget, strategy="tagcos", progress=False, dedup="none", **{**TINY, **options})[1]


@pytest.fixture(scope="module")
def first(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tagcos-run")
    return out, tagcos_run(data, out, 8)


def workdir(out):
    return out / "cache" / "strategies" / "gradients"


def cached(examples, checkpoint, out):
    """The Adam features of `examples` as the run cached them; computing any is a failure."""
    def refuse(fresh):
        raise AssertionError(f"{len(fresh)} features were not in the cache")
    config = {**feature_config("smollm2-135m", checkpoint=checkpoint.id, lora_rank=4, preconditioning="adam",
                               dim=512, template="none", max_length=MAX_LENGTH), "dtype": "float16"}
    return cached_vectors(examples, config, workdir(out) / "features", compute=refuse, store_name="gradients")


def recomputed(data, out, budget, clusters=3, seed=0):
    """(input rows TAGCOS picks, labels, rows with a gradient), from the cached features."""
    examples = read_dataset(data).examples
    tokenizer = load_tokenizer("smollm2-135m")
    rows = np.array([i for i, e in enumerate(examples)
                     if len(tokenizer(render_prompt(e, "none"))["input_ids"]) < MAX_LENGTH])
    (folder,) = workdir(out).glob("warmup-*")
    warm = load_warmup(folder)
    features = np.zeros((len(rows), 512), dtype=np.float32)
    for checkpoint, weight in zip(warm.checkpoints, warm.lr_weights):  # Σ_c w_c Γ̂_c, not normalised again
        features += np.float32(weight) * cached([examples[i] for i in rows], checkpoint, out)
    labels = KMeans(n_clusters=clusters, n_init=1, random_state=seed).fit(features).predict(features)
    picks, _ = tagcos_select(features, labels, budget, ridge=1.0, nonnegative=True)
    return rows[picks], labels, rows


def test_picks_equal_kmeans_and_tagcos_select_on_the_cached_features(data, first):
    out, selection = first
    expected, labels, rows = recomputed(data, out, 8)
    assert selection.order.tolist() == expected.tolist()
    stats = selection.stats
    sizes = np.bincount(labels, minlength=3)
    assert stats["clusters"] == 3 and stats["cluster_sizes"] == sizes.tolist()
    assert stats["picks_per_cluster"] == cluster_quotas(sizes, 8).tolist() and sum(stats["picks_per_cluster"]) == 8
    assert stats["records_scored"] == len(rows) and stats["excluded"] == N_RECORDS - len(rows) > 0
    assert stats["warmup_trained"] and len(stats["checkpoints"]) == 2 and stats["filled_by_cosine"] >= 0
    assert {"load", "warmup", "train_features", "select"} <= set(stats["seconds"])
    assert any(f"{stats['excluded']} of {N_RECORDS} candidates left out" in note for note in selection.notes)
    assert len(set(selection.order.tolist())) == 8  # duplicates: distinct positions


def test_a_second_run_trains_and_computes_nothing_and_repeats_its_picks(data, first):
    out, selection = first
    watched = sorted(p for p in workdir(out).rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in watched]
    again = tagcos_run(data, out, 8)
    assert again.stats["warmup_trained"] is False and again.stats["features_computed"] == 0
    assert [p.stat().st_mtime_ns for p in watched] == stamps
    assert sorted(p for p in workdir(out).rglob("*") if p.is_file()) == watched
    assert again.order.tolist() == selection.order.tolist()


def test_less_on_the_same_records_reuses_tagcos_warmup_and_candidate_features(data, first, tmp_path):
    """LESS and TAGCOS share `strategies/gradients/`: only the targets' features are new."""
    out, _ = first
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps({"instruction": "What is 7 + 5?", "input": "", "output": "7 + 5 = 12."}) + "\n")
    options = {k: v for k, v in TINY.items() if k != "clusters"}
    less = sftpick.select(out / "scores.parquet", 4, strategy="less", data=data, target=str(target),
                          cache_dir=out / "cache", **options)
    assert less.stats["warmup_trained"] is False
    assert less.stats["features_computed"] == len(less.stats["checkpoints"]) == 2  # one target, two checkpoints


@pytest.mark.parametrize("budget, clusters, seed", [(5, 2, 1), (16, 4, 0), (1, 3, 0)])
def test_other_budgets_clusters_and_seeds_match_the_recomputation(data, first, budget, clusters, seed):
    out, _ = first
    chosen = tagcos_run(data, out, budget, clusters=clusters, seed=seed)
    assert chosen.stats["features_computed"] == 0
    assert chosen.order.tolist() == recomputed(data, out, budget, clusters, seed)[0].tolist()
    assert len(chosen.order) == budget == len(set(chosen.order.tolist()))


def test_a_budget_above_the_candidates_with_a_gradient_is_said(data, first):
    out, _ = first
    everything = tagcos_run(data, out, N_RECORDS)
    scored = everything.stats["records_scored"]
    assert len(everything.order) == scored < N_RECORDS and len(set(everything.order.tolist())) == scored
    assert any(f"selected {scored} of {N_RECORDS}" in note for note in everything.notes)


def test_bad_options_fail_before_any_model_loads(data, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")
    for where in ("sftpick.features.store.load_causal_lm", "sftpick.scorers.length.load_tokenizer"):
        monkeypatch.setattr(where, refuse)
    for bad, expected in [({"clusters": 0}, "clusters=0"), ({"omp_ridge": -1.0}, "omp_ridge=-1"),
                          ({"warmup_fraction": 1.5}, "warmup_fraction=1.5"), ({"device": "tpu"}, "device='tpu'")]:
        with pytest.raises(SftpickError, match=expected):
            tagcos_run(data, tmp_path / "out", 3, **bad)
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_checkpoints_at_given_steps_as_tagcos_code_stop_the_warmup_after_the_last(data, tmp_path):
    """`checkpoint_steps`: checkpoints after optimizer steps 1 and 3 of the 4-step schedule (3
    records, batch 2, 2 epochs), each weighted by the mean lr since the one before; step 4 never runs."""
    selector = Tagcos(checkpoint_steps=[1, 3], **{k: v for k, v in TINY.items() if k != "clusters"})
    selector.check()
    examples = read_dataset(data).examples[:15]  # 15 records with a gradient: 3 in the warmup
    gradients = Gradients(selector.gradient_settings(), tmp_path)
    warm, _ = gradients.warmup(examples)
    assert [c.path.name for c in warm.checkpoints] == ["step-1", "step-3"]
    assert [c.step for c in warm.checkpoints] == [1, 3] and [c.epoch for c in warm.checkpoints] == [1, 2]
    assert [c.lr_mean for c in warm.checkpoints] == pytest.approx([2e-5, (1.5e-5 + 1e-5) / 2])
    assert set(load_adam_state(warm.checkpoints[-1]).step.values()) == {3.0}  # stopped after step 3
    beyond = Tagcos(checkpoint_steps=[2, 5], **{k: v for k, v in TINY.items() if k != "clusters"})
    with pytest.raises(SftpickError, match="reach past the warmup's 4 optimizer steps"):
        Gradients(beyond.gradient_settings(), tmp_path).warmup(examples)
    with pytest.raises(SftpickError, match="ascending"):
        Tagcos(checkpoint_steps=[3, 1]).check()


def test_the_command_line_refuses_unordered_checkpoint_steps_in_one_line(data, tmp_path):
    done = CliRunner().invoke(app, ["run", str(data), "-o", str(tmp_path / "out"), "--strategy", "tagcos",
                                    "--checkpoint-steps", "30", "--checkpoint-steps", "10", "--no-progress"])
    assert done.exit_code == 2
    assert "checkpoint_steps=[30, 10] should be ascending" in one_line_error(done.output)
