"""DiverseEvol (arXiv 2311.08182) as a strategy, on the real embedded SmolLM2-135M and real
records at a tiny scale (24 records, 4 drawn, 4 added a round, LoRA rank 4, two optimizer steps,
64 tokens): each round's k-center picks against a naive loop over the embeddings that round's
model made, the embedding against a hand-written mean, resuming (a finished round is never
trained again; a killed round is redone), the budget arithmetic, and a whole `sftpick.run`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import sftpick
from sftpick.errors import DataError
from sftpick.models import load_causal_lm
from sftpick.train.data import encode

pytest.importorskip("peft")

import sftpick.selectors.diverse_evol as diverse_evol
import sftpick.train.finetune  # noqa: E402 (the fine-tune the spy wraps)
from sftpick.selectors.diverse_evol import DiverseEvol, kcenter_round, mean_hidden

TINY = {"initial": 4, "per_round": 4, "epochs": 1, "max_steps": 2, "max_length": 64, "lora_rank": 4, "lr": 1e-3,
        "batch_size": 4, "template": "none", "device": "cpu"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", autouse=True)
def load_once():
    """The base model is loaded once for the whole file (each round trains a copy of it)."""
    import functools

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sftpick.models.load_causal_lm", functools.cache(load_causal_lm))
        yield


@pytest.fixture(scope="module")
def records(real_dataset):
    return real_dataset.examples[:24]


def table_of(examples) -> pa.Table:
    return pa.table({"row": [e.row for e in examples], "id": [e.id for e in examples]})


def strategy(records, workdir: Path, **options) -> DiverseEvol:
    chosen = DiverseEvol(by=None, **{**TINY, **options})
    chosen.records_, chosen.workdir_ = records, workdir
    return chosen


def naive_kcenter(x: np.ndarray, chosen: list[int], count: int) -> list[int]:
    """KCenterSampling.query as written: the full distance matrix (clamped at 0), each pick the
    unchosen row whose nearest chosen row is farthest (argmax: the first among ties)."""
    x = x.astype(np.float64)
    squared = (x * x).sum(axis=1)
    distance = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0))
    labeled, picks = list(chosen), []
    for _ in range(count):
        unlabeled = [i for i in range(len(x)) if i not in labeled]
        nearest = distance[np.ix_(unlabeled, labeled)].min(axis=1)
        pick = unlabeled[int(np.argmax(nearest))]
        picks.append(pick)
        labeled.append(pick)
    return picks


class Spy:
    """Wraps the strategy's embedding and fine-tune, keeping what they made and counting calls."""

    def __init__(self, monkeypatch, fail_on: int | None = None):
        self.vectors, self.fine_tunes, self.fail_on = [], 0, fail_on
        embed, train = diverse_evol.mean_hidden, sftpick.train.finetune.fine_tune

        def spy_embed(*args, **kwargs):
            self.vectors.append(embed(*args, **kwargs))
            return self.vectors[-1]

        def spy_train(*args, **kwargs):
            self.fine_tunes += 1
            if self.fine_tunes == self.fail_on:
                raise KeyboardInterrupt("killed")
            return train(*args, **kwargs)
        monkeypatch.setattr(diverse_evol, "mean_hidden", spy_embed)
        monkeypatch.setattr(sftpick.train.finetune, "fine_tune", spy_train)


# ---------------------------------------------------------------- the round step

@pytest.fixture(scope="module")
def evolved(records, tmp_path_factory):
    """Budget 10: 4 drawn, a round of 4, a last round of the 2 left; what each round embedded."""
    workdir = tmp_path_factory.mktemp("evolved")
    with pytest.MonkeyPatch.context() as patch:
        spy = Spy(patch)
        picker = strategy(records, workdir)
        chosen = picker.select(table_of(records), 10).tolist()
    return workdir, picker, chosen, spy


def test_each_round_adds_the_naive_k_center_picks_of_its_model_s_embeddings(records, evolved):
    _, picker, chosen, spy = evolved
    assert spy.fine_tunes == 2 and len(spy.vectors) == 2 and len(chosen) == len(set(chosen)) == 10
    draw = np.sort(np.random.default_rng(42).permutation(24)[:4]).tolist()
    assert chosen[:4] == draw
    assert chosen[4:8] == naive_kcenter(spy.vectors[0], chosen[:4], 4)
    assert chosen[8:10] == naive_kcenter(spy.vectors[1], chosen[:8], 2)
    assert not np.allclose(spy.vectors[0], spy.vectors[1])  # each round's own model embeds
    for stats, vectors, end in zip(picker.stats_["rounds"], spy.vectors, (8, 10)):
        x = vectors.astype(np.float64)
        centers = x[chosen[:end]]
        radius = np.sqrt(((x[:, None] - centers[None]) ** 2).sum(axis=2)).min(axis=1).max()
        assert stats["covering_radius"] == pytest.approx(radius, rel=1e-4)
    assert [r["rows"] for r in picker.stats_["rounds"]] == [[records[i].row for i in chosen[4:8]],
                                                            [records[i].row for i in chosen[8:10]]]
    assert picker.stats_["fine_tunes"] == 2 and picker.stats_["rounds"][0]["fine_tune"]["steps"] == 2


def test_the_embedding_is_the_mean_hidden_state_over_every_token(records):
    lm = load_causal_lm(device="cpu", dtype="float32")
    encoded, _ = encode(records[16:22], lm.tokenizer, "alpaca", 1024)  # short records: none is cut
    ids = [e.ids for e in encoded if e is not None]
    ids[0] = ids[0][:20]  # the batch is padded
    pooled = mean_hidden(lm.model, ids, pad_id=2, token_budget=10_000)
    for row, vector in zip(ids, pooled):
        with torch.inference_mode():
            hidden = lm.model(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(vector, hidden.double().mean(dim=0).numpy(), atol=2e-4 * np.abs(vector).max())
    assert all(row[-1] == lm.tokenizer.eos_token_id for row in ids[1:])  # prompt + response + EOS


def test_duplicates_of_chosen_records_come_last_in_pool_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    pool = np.concatenate([x, x[[0, 1]]])  # rows 6 and 7 duplicate the chosen rows 0 and 1
    picks, radius = kcenter_round(pool, np.array([0, 1]), 6)
    assert picks[:4].tolist() == naive_kcenter(pool, [0, 1], 4) and picks[4:].tolist() == [6, 7]
    assert radius == 0.0


# ---------------------------------------------------------------- resuming

def test_a_finished_round_is_never_trained_again(records, evolved, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(evolved[0], tmp_path, dirs_exist_ok=True)
    first, table = evolved[2], table_of(records)
    folder = next(tmp_path.glob("run-*"))
    files = sorted(folder.glob("round-*.json"))
    assert [f.name for f in files] == ["round-001.json", "round-002.json"]
    stamp = files[0].stat().st_mtime_ns

    spy = Spy(monkeypatch)
    again = strategy(records, tmp_path)
    assert again.select(table, 10).tolist() == first and spy.fine_tunes == 0
    assert again.stats_["rounds_resumed"] == 2 and again.stats_["fine_tunes"] == 0

    (folder / "round-002.json").unlink()  # killed during round 2: only round 2 is redone
    redo = strategy(records, tmp_path)
    assert redo.select(table, 10).tolist() == first and spy.fine_tunes == 1
    assert (folder / "round-001.json").stat().st_mtime_ns == stamp

    (folder / "round-001.json").unlink()  # round 1 redone; round 2 was made from the same set: kept
    assert strategy(records, tmp_path).select(table, 10).tolist() == first and spy.fine_tunes == 2

    shorter = strategy(records, tmp_path)  # round 1 serves a budget of 8; other settings are another run
    assert shorter.select(table, 8).tolist() == first[:8] and spy.fine_tunes == 2
    strategy(records, tmp_path, seed=7).select(table, 8)
    assert spy.fine_tunes == 3 and len(list(tmp_path.glob("run-*"))) == 2


def test_a_killed_run_redoes_only_the_round_it_was_in(records, tmp_path, monkeypatch):
    table = table_of(records)
    Spy(monkeypatch, fail_on=2)
    with pytest.raises(KeyboardInterrupt):
        strategy(records, tmp_path).select(table, 12)
    folder = next(tmp_path.glob("run-*"))
    assert [f.name for f in folder.glob("round-*.json")] == ["round-001.json"]
    assert not list(folder.glob(".*"))  # no torn temporary file
    spy = Spy(monkeypatch)
    rerun = strategy(records, tmp_path)
    assert len(rerun.select(table, 12)) == 12 and spy.fine_tunes == 1 and rerun.stats_["rounds_resumed"] == 1


# ---------------------------------------------------------------- budgets

def test_a_budget_under_initial_is_a_seeded_draw_and_trains_nothing(records, tmp_path, monkeypatch):
    monkeypatch.setattr("sftpick.models.load_causal_lm", lambda *a, **k: pytest.fail("a model was loaded"))
    picker = strategy(records, tmp_path)
    chosen = picker.select(table_of(records), 3)
    assert chosen.tolist() == np.sort(np.random.default_rng(42).permutation(24)[:3]).tolist()
    assert "seeded random draw" in picker.notes_[0] and picker.stats_["rounds"] == []
    exact = strategy(records, tmp_path)
    assert len(exact.select(table_of(records), 4)) == 4 and exact.notes_ == []
    everything = strategy(records, tmp_path)
    assert everything.select(table_of(records), 24).tolist() == list(range(24)) and everything.notes_


def test_the_defaults_are_the_paper_s_recipe():
    picker = DiverseEvol()
    assert (picker.initial, picker.per_round, picker.lora_rank, picker.epochs, picker.lr) == (100, 100, None, 3.0, 2e-5)
    config = picker.train_config()
    assert (config.scheduler, config.warmup, config.weight_decay, config.max_length, config.batch_size) == \
        ("cosine", 0.03, 0.0, 512, 64)


def test_without_records_it_says_what_to_give():
    with pytest.raises(DataError, match="give the data"):
        DiverseEvol().select(pa.table({"row": [0, 1], "id": ["a", "b"]}), 1)


# ---------------------------------------------------------------- end to end

def test_run_from_a_data_file_and_again_from_its_cache(tmp_path, real_records_path, monkeypatch):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(json.loads(real_records_path.read_text())[:24]))
    out = tmp_path / "out"
    options = {k: v for k, v in TINY.items() if k != "device"}
    _, selection = sftpick.run(data, out, 12, strategy="diverse-evol", order="pick", progress=False, **options)
    manifest = json.loads((out / "manifest.json").read_text())
    stats = manifest["selection"]["stats"]
    assert len(selection.order) == 12 and stats["fine_tunes"] == 2 and len(stats["rounds"]) == 2
    assert stats["initial"]["rows"] == np.sort(np.random.default_rng(42).permutation(24)[:4]).tolist()
    assert selection.order.tolist()[4:] == [row for r in stats["rounds"] for row in r["rows"]]
    assert len(json.loads((out / "selected.json").read_text())) == 12
    assert list((out / "cache" / "strategies" / "diverse-evol").glob("run-*/round-002.json"))

    spy = Spy(monkeypatch)
    _, again = sftpick.run(data, out, 12, strategy="diverse-evol", order="pick", progress=False, **options)
    assert again.order.tolist() == selection.order.tolist() and spy.fine_tunes == 0
