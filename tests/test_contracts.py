"""The contracts every registered scorer and selector keeps (in the style of scikit-learn's
`parametrize_with_checks`): the suite runs over the registries, so a new method is checked
without being added to a list here.

Selectors: pick order is deterministic for a seed; the budget is met exactly or a note says
why; tied scores and duplicate vectors give distinct picks; an empty table gives nothing.
Scorers: `config()` is known before any model loads; every record of a batch gets a value in
every column, or a reject with its reason (NaN in its columns, never a default score); every
option declared has a valid default."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sftpick
from sftpick.errors import DataError
from sftpick.options import declared
from sftpick.scorers import REJECT, SCORERS, make_scorer
from sftpick.selectors import SELECTORS, make_selector
from sftpick.selectors.target import TargetedSelector

# ---------------------------------------------------------------- selectors

# The strategies that put a model in the loop read the records and train or run a model: their
# own tests (tests/test_less.py, test_tagcos, test_rds, test_diverse_evol, test_mods) check
# these contracts on real records; here, the ones that choose from the table alone.
SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"
TABLE_ONLY = sorted(name for name, cls in SELECTORS.items() if not cls.needs_records)


def unit_vectors(n: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scores(values: np.ndarray) -> pa.Table:
    """Every ranking column a strategy may ask for, holding the same values."""
    n = len(values)
    return pa.table({"row": np.arange(n) * 2 + 1, "id": [f"r{i}" for i in range(n)],
                     **{column: values for column in ("ifd", "judge", "ppl_ins")}})


def selector(name: str):
    chosen = make_selector(name, by="ifd")
    chosen.check()
    return chosen


def choose(name: str, table: pa.Table, budget: int, vectors: np.ndarray):
    picker = selector(name)
    return picker, picker.select(table, budget, vectors if picker.needs_embeddings else None)


def choose_or_refuse(name: str, table: pa.Table, budget: int, vectors: np.ndarray):
    """`choose`, or None when the strategy refuses a budget its own options cannot meet (lift's
    variety stage keeps too few): a clear error naming the budget, before any choice."""
    try:
        return choose(name, table, budget, vectors)
    except DataError as error:
        assert "budget" in str(error), error
        return None


@pytest.mark.parametrize("name", TABLE_ONLY)
@pytest.mark.parametrize("n, budget", [(40, 10), (120, 7), (25, 25)])
def test_selector_is_deterministic_and_meets_the_budget_or_says_why(name, n, budget):
    table, x = scores(np.random.default_rng(n).uniform(size=n)), unit_vectors(n, seed=n)
    if choose_or_refuse(name, table, budget, x) is None:
        return
    first, chosen = choose(name, table, budget, x)
    _, again = choose(name, table, budget, x)
    assert chosen.tolist() == again.tolist()
    assert chosen.dtype.kind == "i" and len(set(chosen.tolist())) == len(chosen)
    assert len(chosen) == 0 or (chosen.min() >= 0 and chosen.max() < n)
    assert len(chosen) == budget or getattr(first, "notes_", None), f"{name}: {len(chosen)} of {budget}, no note"


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(TABLE_ONLY), n=st.integers(8, 120), seed=st.integers(0, 3), data=st.data())
def test_budget_is_met_with_distinct_positions_and_repeatable(name, n, seed, data):
    budget = data.draw(st.integers(1, n))
    table, x = scores(np.random.default_rng(seed + 1).uniform(size=n)), unit_vectors(n, seed=seed)
    if choose_or_refuse(name, table, budget, x) is None:
        return
    first, chosen = choose(name, table, budget, x)
    assert chosen.tolist() == choose(name, table, budget, x)[1].tolist()
    assert len(set(chosen.tolist())) == len(chosen) and chosen.min() >= 0 and chosen.max() < n
    if len(chosen) < budget:
        assert first.notes_, f"{name} returned {len(chosen)} of {budget} without a note"


@pytest.mark.parametrize("name", TABLE_ONLY)
def test_selector_breaks_ties_and_duplicates_without_repeating_a_record(name):
    n = 30
    tied = scores(np.full(n, 0.5))
    copies = np.repeat(unit_vectors(3), 10, axis=0)  # three distinct records, ten copies each
    if choose_or_refuse(name, tied, 12, copies) is None:
        return
    first, chosen = choose(name, tied, 12, copies)
    assert len(set(chosen.tolist())) == len(chosen) and chosen.tolist() == choose(name, tied, 12, copies)[1].tolist()
    assert len(chosen) == 12 or getattr(first, "notes_", None), f"{name}: {len(chosen)} of 12, no note"


@pytest.mark.parametrize("name", TABLE_ONLY)
def test_selector_on_an_empty_table_chooses_nothing(name):
    _, chosen = choose(name, scores(np.empty(0)), 0, np.empty((0, 6), np.float32))
    assert len(chosen) == 0


@pytest.mark.parametrize("kind, registry", [("scorer", SCORERS), ("selector", SELECTORS)])
def test_every_declared_option_has_help_and_a_valid_default(kind, registry):
    for name, cls in registry.items():
        for option in declared(cls):
            assert option.spec.help, f"{kind} {name}: option {option.name} has no help"
    for name, cls in SELECTORS.items():  # a targeted strategy's one required option is its target
        make_selector(name, **({"target": str(SAMPLE)} if issubclass(cls, TargetedSelector) else {})).check()


# ---------------------------------------------------------------- scorers

# What a scorer needs to run here, when its defaults do not suffice (the judge needs a
# server: tests/test_judge.py runs it against `transformers serve`).
NEEDS = {"judge": None, "reward": "reward_model", "rule": None}


@pytest.fixture(scope="module")
def tiny_reward(tmp_path_factory):
    from tiny_reward import build_tiny_reward_model

    return str(build_tiny_reward_model(tmp_path_factory.mktemp("reward")))


def scorer_for(name: str, tiny_reward: str):
    if name in NEEDS and NEEDS[name] is None:
        pytest.skip(f"{name} is checked in its own tests (it needs a server or other columns)")
    options = {"reward_model": tiny_reward} if NEEDS.get(name) == "reward_model" else {}
    declared_names = {o.name for o in declared(SCORERS[name])}
    small = {"device": "cpu", "max_length": 48}
    return make_scorer(name, **options, **{k: v for k, v in small.items() if k in declared_names})


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorer_config_is_known_before_any_model_loads(name, tiny_reward):
    scorer = scorer_for(name, tiny_reward)
    scorer.check()
    config = scorer.config()
    assert config["scorer"] == name and config == scorer.config()
    loaded = [k for k, v in vars(scorer).items() if isinstance(v, torch.nn.Module) or hasattr(v, "model")]
    assert not loaded, f"{name}.config() loaded {loaded}"


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorer_gives_every_record_a_value_or_a_reason(name, tiny_reward, real_dataset):
    scorer = scorer_for(name, tiny_reward)
    scorer.setup()
    batch = real_dataset.examples[:6]
    out = scorer.score(batch)
    if getattr(scorer, "embeds", False):  # kNN: a vector per record, its column from the global step
        assert out["vector"].shape[0] == len(batch) and np.isfinite(out["vector"]).all()
        return
    reasons = out.get(REJECT, np.full(len(batch), None, dtype=object))
    for column in scorer.columns:
        assert len(out[column]) == len(batch), f"{name}: column {column} has {len(out[column])} values"
    for i, reason in enumerate(reasons):
        values = [float(out[column][i]) for column in scorer.columns]
        if reason is None:
            assert all(math.isfinite(v) for v in values), f"{name}: record {i} unscored without a reason"
        else:
            assert isinstance(reason, str) and reason, f"{name}: record {i} rejected without a reason"
    long = [e for e in real_dataset.examples if len(e.response) > 600][:2]
    scored = scorer.score(long)
    for i, reason in enumerate(scored.get(REJECT, [None] * len(long))):
        if reason is not None:  # a record it cannot score is a reason, never a number in a score column
            floats = [c for c in scorer.columns if np.asarray(scored[c]).dtype.kind == "f"]
            assert all(math.isnan(float(scored[c][i])) for c in floats), f"{name}: a rejected record kept a score"
