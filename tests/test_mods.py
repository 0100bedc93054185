"""MoDS (arXiv 2311.15653) end to end through `sftpick.run` on the embedded SmolLM2-135M and a
tiny real reward model (tests/tiny_reward.py), at tiny sizes: 26 real records, a seed of 4,
two optimizer steps, 8 new tokens, 96-token sequences. The stage counts reconcile, a rerun
reuses every cached stage (no fine-tune, no generation), a run killed while generating
resumes without fine-tuning again; the k-center stages equal a naive loop on the same
vectors; the contract checks hold with the model stages stubbed; bad options fail before
any model loads."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("peft")

from test_contracts import scores, unit_vectors  # noqa: E402

import sftpick  # noqa: E402
import sftpick.selectors.mods  # noqa: E402,F401  (registers the strategy)
from sftpick.embeddings import embed_examples  # noqa: E402
from sftpick.errors import OptionError  # noqa: E402
from sftpick.provenance import META_KEY  # noqa: E402
from sftpick.selectors import make_selector  # noqa: E402
from sftpick.selectors.mods import MoDS  # noqa: E402

TINY = {"seed_size": 4, "max_new_tokens": 8, "max_steps": 2, "max_length": 96, "device": "cpu",
        "generate_batch_size": 4, "progress": False}
BUDGET = 10


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_reward(tmp_path_factory) -> str:
    from tiny_reward import build_tiny_reward_model

    return str(build_tiny_reward_model(tmp_path_factory.mktemp("reward")))


@pytest.fixture(scope="module")
def rewards(tiny_reward, real_dataset) -> np.ndarray:
    """The tiny model's rewards of the records (it is random: the thresholds follow them)."""
    from sftpick.scorers.reward import RewardScorer

    scorer = RewardScorer(reward_model=tiny_reward, device="cpu")
    scorer.setup()
    return scorer.score(real_dataset.examples)["reward"]


@pytest.fixture(scope="module")
def quality(rewards) -> float:
    """A threshold that leaves 20 of the 26 records of high quality."""
    return float(np.sort(rewards)[5])


def workdir(out):
    return out / "cache" / "strategies" / "mods"


def test_whole_pipeline_through_run_reconciles_and_a_rerun_reuses_every_stage(tmp_path, real_records_path,
                                                                             tiny_reward, quality, monkeypatch):
    out = tmp_path / "run"
    options = {"strategy": "mods", "reward_model": tiny_reward, "quality_threshold": quality, **TINY}
    _, first = sftpick.run(real_records_path, out, BUDGET, necessity_threshold=1e9, **options)
    stats = first.stats
    assert stats["stages"] == {"quality": "from the scores' reward column", "seed": "computed",
                               "fine_tune": "trained", "generation": "computed", "necessity": "computed"}
    assert (stats["candidates"], stats["high_quality"], stats["seed"]) == (26, 20, 4)
    assert stats["generated"] == stats["high_quality"] - stats["seed"] == stats["needed"] == 16
    assert stats["added"] == BUDGET - 4 and stats["final"] == len(first.order) == BUDGET and not first.notes
    assert stats["generation"]["max_new_tokens"] == 8 and stats["generation"]["num_beams"] == 4
    assert stats["generation"]["training"]["steps"] == 2
    table = pq.read_table(out / "scores.parquet")
    by_row = dict(zip(table.column("row").to_pylist(), table.column("reward").to_pylist()))
    assert all(by_row[int(r)] > quality for r in first.order) and len(set(first.order.tolist())) == BUDGET
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"]["stats"]["final"] == BUDGET
    assert manifest["selection"]["stats"]["necessity_threshold"] == 1e9
    assert len(json.loads(json.dumps(stats))) == len(stats)  # plain JSON-able data

    def refuse(*args, **kwargs):
        raise AssertionError("a cached stage ran again")

    monkeypatch.setattr("sftpick.train.finetune.fine_tune", refuse)
    monkeypatch.setattr("sftpick.models.load_causal_lm", refuse)
    monkeypatch.setattr(MoDS, "_generate", refuse)
    reward_scorer = MoDS._reward_scorer

    def no_reward_pass(self):  # the run's own reward scorer loads (its scores are cached); mods's must not
        scorer = reward_scorer(self)
        scorer.setup = refuse
        return scorer

    monkeypatch.setattr(MoDS, "_reward_scorer", no_reward_pass)
    median = stats["generated_reward"]["median"]
    _, second = sftpick.run(real_records_path, out, BUDGET, necessity_threshold=median, **options)
    again = second.stats
    assert again["stages"] == {"quality": "from the scores' reward column", "seed": "cached",
                               "fine_tune": "not needed: every generation is cached", "generation": "cached",
                               "necessity": "cached"}
    assert again["generated_reward"] == stats["generated_reward"]
    assert 0 < again["needed"] < again["generated"] == 16
    assert second.order[:4].tolist() == first.order[:4].tolist()  # the same seed
    assert again["final"] == again["seed"] + again["added"] == len(second.order)
    assert again["added"] == min(again["needed"], BUDGET - 4)

    _, third = sftpick.run(real_records_path, out, BUDGET, necessity_threshold=stats["generated_reward"]["min"],
                           **options)  # strictly below the least reward: nothing is needed
    assert third.stats["needed"] == third.stats["added"] == 0 and len(third.order) == 4
    assert any("selected 4 of 10" in note and "necessity_threshold" in note for note in third.notes)


def test_a_run_killed_while_generating_resumes_without_fine_tuning_again(tmp_path, real_records_path, tiny_reward,
                                                                          rewards, quality, monkeypatch):
    """No reward column (len only): mods scores the quality itself. All weights are tuned
    (lora_rank=0): kept until the generations are complete, then removed."""
    out = tmp_path / "run"
    options = {"strategy": "mods", "scorers": ["len"], "reward_model": tiny_reward, "quality_threshold": quality,
               "necessity_threshold": 1e9, "lora_rank": 0, **TINY}
    generate, calls = MoDS._generate, []

    def dies_on_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # ^C while generating
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(MoDS, "_generate", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        sftpick.run(real_records_path, out, BUDGET, **options)
    (model,) = workdir(out).glob("model-*")
    assert (model / "training.json").exists() and (model / "config.json").exists()
    (quality_store,) = workdir(out).glob("reward-quality-*")
    scored = pa.concat_tables([pq.read_table(f) for f in quality_store.glob("shard-*.parquet")])
    assert np.allclose(np.sort(scored.column("reward").to_numpy()), np.sort(rewards), atol=1e-6)

    monkeypatch.setattr(MoDS, "_generate", generate)
    monkeypatch.setattr("sftpick.train.finetune.fine_tune", lambda *a, **k: pytest.fail("fine-tuned again"))
    _, selection = sftpick.run(real_records_path, out, BUDGET, **options)
    stages = selection.stats["stages"]
    assert stages["quality"] == stages["seed"] == stages["fine_tune"] == "cached"
    assert stages["generation"] == "12 of 16 computed"  # the first batch of 4 was kept
    assert sorted(p.name for p in model.iterdir()) == ["training.json"]  # the weights went with their use
    assert selection.stats["final"] == BUDGET
    assert selection.stats["generation"]["training"]["config"]["lora_rank"] is None


# ---------------------------------------------------------------- the selection, model stages stubbed

def fake_response(example) -> str:
    return example.instruction[::-1][:20]


def fake_reward(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8 * 3 - 2  # in [-2, 1)


def stubbed(monkeypatch, **options) -> MoDS:
    """A MoDS whose fine-tune, generation and necessity rewards are stand-ins."""
    monkeypatch.setattr(MoDS, "_generations", lambda self, seed, rest: (
        np.array([fake_response(e) for e in rest], dtype=object), {}))
    monkeypatch.setattr(MoDS, "_cached_rewards", lambda self, stage, examples: np.array(
        [fake_reward(e.response) for e in examples]))
    selector = make_selector("mods", reward_model="stub", **options)
    selector.check()
    return selector


def naive_kcenter(x: np.ndarray, k: int, centers: np.ndarray | None = None, first: int | None = None) -> list[int]:
    """The plain loop: the row farthest from every center so far, ties to the lower position."""
    x = x.astype(np.float64)
    if centers is None:
        chosen, nearest = [first], np.linalg.norm(x - x[first], axis=1)
    else:
        chosen = []
        nearest = np.min(np.linalg.norm(x[:, None] - centers.astype(np.float64)[None], axis=2), axis=1)
    while len(chosen) < k and nearest.max() > 1e-6:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[pick], axis=1))
    return chosen


@pytest.mark.parametrize("seed_size, budget, threshold, seed", [(4, 12, -0.5, 0), (6, 10, 0.0, 3), (2, 20, -1.0, 1)])
def test_the_k_center_stages_equal_a_naive_loop_on_the_same_vectors(real_dataset, tmp_path, monkeypatch,
                                                                    seed_size, budget, threshold, seed):
    examples = real_dataset.examples
    n = len(examples)
    vectors = embed_examples(examples, text="instruction", device="cpu")
    reward = np.random.default_rng(seed).normal(0.5, 1.0, n)
    table = pa.table({"row": np.arange(n), "reward": reward})
    selector = stubbed(monkeypatch, seed_size=seed_size, necessity_threshold=threshold, seed=seed)
    selector.records_, selector.workdir_ = examples, tmp_path
    chosen = selector.select(table, budget, vectors).tolist()

    high = np.flatnonzero(reward > 0.0)
    k = min(seed_size, budget, len(high))
    first = int(np.random.RandomState(seed).choice(len(high)))
    seed_rows = high[naive_kcenter(vectors[high], k, first=first)]
    rest = high[~np.isin(high, seed_rows)]
    needed = rest[[fake_reward(fake_response(examples[i])) < threshold for i in rest]]
    added = needed[naive_kcenter(vectors[needed], budget - k, centers=vectors[seed_rows])]
    assert chosen == seed_rows.tolist() + added.tolist()
    stats = selector.stats_
    assert (stats["high_quality"], stats["seed"], stats["generated"], stats["needed"], stats["added"]) == (
        len(high), k, len(rest), len(needed), len(added))
    assert stats["final"] == stats["seed"] + stats["added"] == len(chosen)
    assert len(chosen) == budget or selector.notes_

    selector = stubbed(monkeypatch, seed_size=seed_size, necessity_threshold=threshold, seed=seed, augment="all")
    selector.records_, selector.workdir_ = examples, tmp_path
    assert selector.select(table, budget, vectors).tolist() == seed_rows.tolist() + needed[:budget - k].tolist()


def fake_records(n: int) -> list:
    from sftpick.examples import to_example

    return [to_example({"instruction": f"task {i}: do thing {i * 7 % 13}", "output": f"answer {i}"}, i, "alpaca")
            for i in range(n)]


@pytest.mark.parametrize("n, budget", [(40, 10), (120, 7), (25, 25)])
def test_contract_deterministic_distinct_and_the_budget_or_a_note(tmp_path, monkeypatch, n, budget):
    rng = np.random.default_rng(n)
    table = scores(rng.uniform(size=n)).append_column("reward", pa.array(rng.normal(0.3, 1.0, n)))
    x = unit_vectors(n, seed=n)
    picks = []
    for _ in range(2):
        selector = stubbed(monkeypatch, seed_size=3)
        selector.records_, selector.workdir_ = fake_records(n), tmp_path
        picks.append(selector.select(table, budget, x).tolist())
    assert picks[0] == picks[1] and len(set(picks[0])) == len(picks[0])
    assert min(picks[0]) >= 0 and max(picks[0]) < n
    assert len(picks[0]) == budget or any("selected" in note for note in selector.notes_)


def test_contract_ties_duplicates_and_an_empty_table(tmp_path, monkeypatch):
    tied = scores(np.full(30, 0.5)).append_column("reward", pa.array(np.full(30, 1.0)))
    copies = np.repeat(unit_vectors(3), 10, axis=0)  # three distinct records, ten copies each
    selector = stubbed(monkeypatch, seed_size=2)
    selector.records_, selector.workdir_ = fake_records(30), tmp_path
    chosen = selector.select(tied, 12, copies).tolist()
    assert len(set(chosen)) == len(chosen) <= 3  # two seeds; a third distinct record only if one of it is needed
    assert selector.notes_ and "duplicate" in selector.notes_[0]
    assert len(stubbed(monkeypatch).select(scores(np.empty(0)), 0, np.empty((0, 6), np.float32))) == 0


def test_no_high_quality_record_gives_nothing_and_says_why(tmp_path, monkeypatch):
    selector = stubbed(monkeypatch, quality_threshold=5.0)
    selector.records_, selector.workdir_ = fake_records(20), tmp_path
    table = scores(np.zeros(20)).append_column("reward", pa.array(np.zeros(20)))
    assert len(selector.select(table, 5, unit_vectors(20))) == 0
    assert "0 of 20 candidates have a reward above quality_threshold=5" in selector.notes_[0]
    assert selector.stats_["stages"]["generation"] == "not needed: no record is of high quality"


# ---------------------------------------------------------------- options, before any model loads

@pytest.mark.parametrize("bad, match", [({"necessity_threshold": float("nan")}, "necessity_threshold=nan"),
                                        ({"quality_threshold": float("inf")}, "quality_threshold=inf"),
                                        ({"quality_threshold": "high"}, "quality_threshold='high'"),
                                        ({"seed_size": 0}, "seed_size=0"),
                                        ({"augment": "every"}, "augment"),
                                        ({"lora_rank": -1}, "lora_rank=-1")])
def test_bad_options_fail_before_any_model_loads(tmp_path, real_records_path, tiny_reward, monkeypatch, bad, match):
    monkeypatch.setattr("sftpick.models.load_causal_lm", lambda *a, **k: pytest.fail("a model loaded"))
    monkeypatch.setattr("sftpick.scorers.reward.RewardScorer.setup", lambda *a, **k: pytest.fail("a model loaded"))
    with pytest.raises(OptionError, match=match):
        sftpick.run(real_records_path, tmp_path / "out", BUDGET, strategy="mods", reward_model=tiny_reward, **bad)
    assert not (tmp_path / "out" / "scores.parquet").exists()


def test_the_reward_model_is_the_one_that_scored_or_is_named():
    meta = {META_KEY: json.dumps({"scorers": [{"scorer": "reward", "reward_model": "A", "max_length": 128}]})}
    table = pa.table({"row": [0], "reward": [1.0]}).replace_schema_metadata(meta)
    selector = MoDS()
    selector.prepare(table)
    assert (selector.reward_model_, selector.reward_max_length_) == ("A", 128)
    with pytest.raises(OptionError, match="not the model that scored the reward column"):
        MoDS(reward_model="B").prepare(table)
    with pytest.raises(OptionError, match="no reward column: pass --reward-model"):
        MoDS().prepare(pa.table({"row": [0], "ifd": [0.5]}))
    unnamed = MoDS()
    with pytest.raises(OptionError, match="does not say which model"):
        unnamed.prepare(pa.table({"row": [0], "reward": [1.0]}))
