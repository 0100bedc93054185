"""Diversity selection through `api.select` and the CLI: pools, embeddings cache, seed sets,
option checks, manifest."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sftpick import api, cli
from sftpick.embeddings import embeddings_path, load_embeddings, save_embeddings
from sftpick.selectors import parse_budget
from cli_errors import one_line_error

STRATEGIES = ["topk", "kcenter", "facility", "clusters", "deita"]
OPTIONS = {"topk": {}, "kcenter": {}, "facility": {"neighbors": 5}, "clusters": {"clusters": 3}, "deita": {}}


@pytest.fixture(scope="module")
def sample_file():
    """The bundled sample: 120 real Alpaca records."""
    from sftpick.data import sample_path

    return sample_path()


@pytest.fixture(scope="module")
def sample_dataset(sample_file):
    from sftpick.io import read_dataset

    return read_dataset(sample_file)


def write_scores(folder, dataset, n=30):
    """A score table for the sample's first `n` records, every third one left out (ifd made
    up: selection does not care how)."""
    examples = [e for e in dataset.examples if e.row % 3][:n]
    ifd = np.linspace(0.3, 1.2, n)[np.random.default_rng(0).permutation(n)]
    path = folder / "scores.parquet"
    pq.write_table(pa.table({"row": [e.row for e in examples], "id": [e.id for e in examples], "ifd": ifd}), path)
    return path


@pytest.fixture(scope="module")
def first_selection(tmp_path_factory, sample_dataset, sample_file):
    """The embedder runs once for the module: a k-center selection with no cached vectors."""
    scores = write_scores(tmp_path_factory.mktemp("first"), sample_dataset)
    return scores, api.select(scores, 5, strategy="kcenter", data=sample_file)


@pytest.fixture
def scores_file(tmp_path, sample_dataset):
    return write_scores(tmp_path, sample_dataset)


@pytest.fixture
def embedded_scores_file(scores_file, first_selection):
    """A scores file with the vectors already cached beside it."""
    embeddings_path(scores_file).write_bytes(embeddings_path(first_selection[0]).read_bytes())
    return scores_file


def synthetic(n=400, dim=12):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    table = pa.table({"row": np.arange(n), "id": [str(i) for i in range(n)], "ifd": rng.uniform(0.2, 1.4, n)})
    return table, x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pool_then_diversity_chooses_inside_the_pool(strategy):
    table, x = synthetic()
    selection = api.select(table, "5%", by="ifd", max_ifd=1, pool="20%", strategy=strategy,
                           embeddings=x, **OPTIONS[strategy])
    ifd = table.column("ifd").to_numpy()
    pool = np.sort(np.argsort(-np.where(ifd < 1, ifd, -np.inf))[:80])
    assert set(selection.rows.tolist()) <= set(pool.tolist())
    assert len(selection.rows) == 20 or selection.notes
    filtered = int((ifd >= 1).sum())
    assert selection.dropped == {"ifd >= 1 (instruction does not help)": filtered,
                                 "outside the pool (the best 20% by ifd)": 400 - filtered - 80}
    assert selection.params["pool"] == "20%"


def test_kcenter_in_the_pool_reports_its_covering_radius():
    table, x = synthetic()
    selection = api.select(table, 20, pool=100, strategy="kcenter", embeddings=x)
    assert selection.stats["covering_radius"] > 0 and selection.stats["seed_centers"] == 0


@pytest.mark.parametrize("options, message", [
    ({"strategy": "kcenter", "tau": 0.5}, r"option tau does not apply to strategy 'kcenter' \(it takes: seed_set\)"),
    ({"strategy": "topk", "clusters": 4}, r"option clusters does not apply to strategy 'topk' \(it takes: no options\)"),
    ({"strategy": "deita", "pool": 10}, r"pool=10 keeps 10 records, fewer than the budget of 20"),
    ({"strategy": "kcenter"}, r"needs sentence embeddings: no embeddings given; pass the data file"),
])
def test_select_says_what_is_wrong(options, message):
    table, _ = synthetic()
    with pytest.raises(ValueError, match=message):
        api.select(table, 20, **options)


def test_embeddings_of_the_wrong_shape_are_refused():
    table, x = synthetic()
    with pytest.raises(ValueError, match=r"embeddings of shape \(399, 12\) do not match the 400 rows"):
        api.select(table, 20, strategy="deita", embeddings=x[:-1])


def test_select_computes_embeddings_once_then_reuses_them(first_selection, sample_file, monkeypatch):
    scores, first = first_selection
    rows, vectors, meta = load_embeddings(embeddings_path(scores))
    table = pq.read_table(scores)
    candidates = table.column("row").to_numpy()[table.column("ifd").to_numpy() < 1.0]  # k-center ranks by ifd < 1
    assert 0 < len(candidates) < table.num_rows and sorted(rows.tolist()) == candidates.tolist()  # theirs only
    assert vectors.shape == (len(rows), 384) and meta["model"] == "all-minilm-l6-v2"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again although the cache holds the vectors")

    monkeypatch.setattr("sftpick.selectors.vectors.embed_examples", no_embedding)
    again = api.select(scores, 5, strategy="kcenter", data=sample_file)
    without_data = api.select(scores, 5, strategy="kcenter")
    assert len(first.rows) == 5 and first.rows.tolist() == again.rows.tolist() == without_data.rows.tolist()


def test_cached_embeddings_are_matched_by_row(embedded_scores_file):
    """A cache written in another row order (as the kNN indicator may) gives the same choice."""
    path = embeddings_path(embedded_scores_file)
    rows, vectors, meta = load_embeddings(path)
    expected = api.select(embedded_scores_file, 6, strategy="facility", neighbors=3).rows
    save_embeddings(path, rows[::-1], vectors[::-1], meta)
    assert api.select(embedded_scores_file, 6, strategy="facility", neighbors=3).rows.tolist() == expected.tolist()


def test_stale_embeddings_are_recomputed(scores_file, sample_file):
    """Vectors made from other records (their content digest differs) are not used."""
    rows = pq.read_table(scores_file).column("row").to_numpy()
    junk = np.zeros((len(rows), 384), dtype=np.float32)
    junk[:, 0] = 1
    save_embeddings(embeddings_path(scores_file), rows, junk, {"model": "x", "content_digest": "0" * 16})
    api.select(scores_file, 5, strategy="kcenter", data=sample_file)
    _, vectors, meta = load_embeddings(embeddings_path(scores_file))
    assert meta["model"] == "all-minilm-l6-v2" and not np.allclose(vectors, junk[: len(vectors)])


def test_seed_set_records_are_not_chosen_again(tmp_path, embedded_scores_file, sample_file, sample_dataset):
    seed_rows = [1, 2, 4, 5]
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps([sample_dataset.examples[r].record for r in seed_rows]))
    selection = api.select(embedded_scores_file, 8, strategy="kcenter", max_ifd=2, data=sample_file,
                           seed_set=seed_file)
    assert not set(selection.rows.tolist()) & set(seed_rows)
    assert selection.stats["seed_centers"] == 4 and selection.params["seed_set"] == seed_file


def test_selection_stats_and_notes_reach_the_manifest(sample_dataset):
    table, x = synthetic(len(sample_dataset.examples))
    table = table.set_column(0, "row", pa.array([e.row for e in sample_dataset.examples]))
    selection = api.select(table, 10, strategy="deita", tau=0.1, max_ifd=2, embeddings=x)
    scored = api.ScoreResult(table, sample_dataset, [], [], {})
    manifest = api.build_manifest(scored, selection, seconds=0, outputs={})
    assert manifest["selection"]["stats"] == selection.stats and selection.stats["tau"] == 0.1
    assert manifest["selection"]["notes"] and "deita: selected" in manifest["selection"]["notes"][0]
    json.dumps(manifest, default=str)


def test_cli_select_with_pool_and_kcenter(tmp_path, embedded_scores_file, sample_file):
    scores_file = embedded_scores_file
    output = tmp_path / "subset.jsonl"
    result = CliRunner().invoke(cli.app, ["select", str(sample_file), "--scores", str(scores_file),
                                          "-o", str(output), "--budget", "4", "--pool", "50%",
                                          "--strategy", "kcenter"])
    assert result.exit_code == 0, result.output
    assert len(output.read_text().splitlines()) == 4
    assert "covering_radius=" in result.output
    assert embeddings_path(scores_file).exists()


def test_cli_refuses_an_option_of_another_strategy(tmp_path, scores_file, sample_file):
    result = CliRunner().invoke(cli.app, ["select", str(sample_file), "--scores", str(scores_file),
                                          "-o", str(tmp_path / "s.jsonl"), "--budget", "4", "--tau", "0.8"])
    assert result.exit_code == 2
    assert "option tau does not apply to strategy 'topk'" in one_line_error(result.output)


def test_run_accepts_every_option_of_select():
    commands = typer.main.get_command(cli.app).commands
    flags = {name: {flag for param in commands[name].params for flag in param.opts} for name in ("select", "run")}
    assert flags["select"] - {"--scores", "-o", "--output"} <= flags["run"]
    assert {"--tau", "--seed-set", "--kcenter.seed-set", "--budget", "--where", "--order"} <= flags["select"]


@settings(max_examples=20, deadline=None)
@given(strategy=st.sampled_from(["kcenter", "facility", "clusters"]),
       budget=st.one_of(st.integers(1, 60).map(str), st.integers(1, 100).map(lambda p: f"{p}%"),
                        st.floats(0.01, 1).map(lambda f: f"{f:.3f}")))
def test_budget_as_count_or_fraction_is_met_and_repeatable(strategy, budget):
    table, x = synthetic(60, 6)
    options = {"clusters": 3} if strategy == "clusters" else {}
    first = api.select(table, budget, strategy=strategy, max_ifd=2, embeddings=x, **options)
    again = api.select(table, budget, strategy=strategy, max_ifd=2, embeddings=x, **options)
    assert len(first.rows) == parse_budget(budget, 60) == first.requested
    assert first.rows.tolist() == again.rows.tolist() and not first.notes
