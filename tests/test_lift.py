"""LIFT's curation (`--strategy lift`) against the authors' own recipe, recomputed here with
scikit-learn on the real MiniLM embeddings of the bundled sample."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.embeddings import embeddings_path, save_embeddings
from sftpick.models import DEFAULT_EMBEDDER
from sftpick.selectors import make_selector
from sftpick.selectors.lift import row_variances
from cli_errors import one_line_error

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"
VECTORS = np.load(Path(__file__).parent / "fixtures" / "sample_alpaca_minilm.npy", allow_pickle=False)  # 120 × 384
N = len(VECTORS)


def reference_row_variances(x: np.ndarray, explained: float = 0.95) -> np.ndarray:
    """embedding_variety_curation.py: StandardScaler, PCA, np.var of each reduced row (their
    script passes a component count; 0.95 asks scikit-learn for the same 95% rule)."""
    normalized = StandardScaler().fit_transform(x.astype(np.float64))
    return np.var(PCA(n_components=explained, svd_solver="full").fit_transform(normalized), axis=1)


def scores(**columns) -> pa.Table:
    return pa.table({"row": np.arange(N), "id": [f"r{i}" for i in range(N)], **columns})


def judge_ratings(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 6, N).astype(np.float64)  # 0-5 with many ties, like a judge's


@pytest.mark.parametrize("explained", [0.95, 0.5])
def test_row_variance_is_the_reference_script_s(explained):
    variance, components, kept = row_variances(VECTORS, explained)
    np.testing.assert_allclose(variance, reference_row_variances(VECTORS, explained), rtol=1e-9)
    pca = PCA(n_components=explained, svd_solver="full").fit(StandardScaler().fit_transform(VECTORS.astype(np.float64)))
    assert components == pca.n_components_ and kept == pytest.approx(pca.explained_variance_ratio_.sum())


def test_variety_stage_keeps_the_top_20_percent_of_row_variance():
    """The script keeps the records above the 80th percentile of row variance; without a quality
    column that stage is the selection, in row-variance order."""
    reference = reference_row_variances(VECTORS)
    above = np.flatnonzero(reference > np.percentile(reference, 80))
    selector = make_selector("lift", by=None)
    chosen = selector.select(scores(len=np.ones(N)), len(above), VECTORS)
    assert sorted(chosen.tolist()) == above.tolist()
    assert chosen.tolist() == np.argsort(-reference, kind="stable")[:len(above)].tolist()
    assert selector.notes_ and "variety stage alone" in selector.notes_[0]


def test_quality_stage_keeps_the_best_rated_among_the_variety_survivors():
    reference = reference_row_variances(VECTORS)
    survivors = np.argsort(-reference, kind="stable")[:24]  # 20% of 120
    judge = judge_ratings()
    outside = np.setdiff1d(np.arange(N), survivors)[0]
    judge[outside] = 10  # the best rating of all, but the variety stage dropped it
    expected = sorted(survivors.tolist(), key=lambda p: (-judge[p], p))[:10]
    selector = make_selector("lift", by="judge")
    chosen = selector.select(scores(judge=judge), 10, VECTORS)
    assert chosen.tolist() == expected and outside not in chosen
    assert selector.stats_["variety_kept"] == 24 and selector.stats_["components"] == 88


def test_ascending_quality_and_a_larger_variety_stage():
    rule = np.random.default_rng(1).normal(size=N)  # Instruction Mining's rule: lower is better
    survivors = np.argsort(-reference_row_variances(VECTORS), kind="stable")[:60]
    chosen = make_selector("lift", by="rule", ascending=True, variety="50%").select(scores(rule=rule), 12, VECTORS)
    assert chosen.tolist() == survivors[np.argsort(rule[survivors], kind="stable")][:12].tolist()


def test_records_without_a_rating_are_never_chosen_and_the_shortfall_is_said():
    judge = judge_ratings()
    survivors = np.argsort(-reference_row_variances(VECTORS), kind="stable")[:24]
    judge[survivors[:20]] = np.nan
    selector = make_selector("lift", by="judge")
    chosen = selector.select(scores(judge=judge), 10, VECTORS)
    assert sorted(chosen.tolist()) == sorted(survivors[20:].tolist())
    assert "selected 4 of 10" in selector.notes_[0]


def test_api_defaults_to_the_judge_column_and_ignores_the_table_order():
    table = scores(judge=judge_ratings(), len=np.arange(N))
    first = sftpick.select(table, 10, strategy="lift", embeddings=VECTORS)
    shuffle = np.random.default_rng(2).permutation(N)
    again = sftpick.select(table.take(shuffle), 10, strategy="lift", embeddings=VECTORS[shuffle])
    assert first.params["by"] == "judge" and first.order.tolist() == again.order.tolist()
    assert first.stats["variety_kept"] == 24 and first.stats["explained_variance"] >= 0.95


def test_identical_records_have_no_variety():
    same = np.repeat(VECTORS[:1], 5, axis=0)
    variance, components, kept = row_variances(same, 0.95)
    assert variance.tolist() == [0.0] * 5 and (components, kept) == (0, 0.0)
    assert row_variances(VECTORS[:1], 0.95)[1] == 0
    chosen = make_selector("lift", by=None).select(scores(len=np.ones(N)).slice(0, 5), 3, same)
    assert chosen.tolist() == [0, 1, 2]  # ties go to the lower row


@pytest.mark.parametrize(("options", "message"), [
    ({"variety": "0"}, r"variety='0' should be a count \(2000\), a fraction"),
    ({"variety": "twenty"}, r"variety='twenty' should be a count"),
    ({"explained_variance": 0}, r"explained_variance=0 should be a share in \(0, 1\]"),
    ({"tau": 0.9}, r"option tau does not apply to strategy 'lift'"),
])
def test_bad_options_fail_before_embeddings_are_read(options, message):
    with pytest.raises(ValueError, match=message):
        sftpick.select(scores(judge=judge_ratings()), 10, strategy="lift", embeddings="/no/such/vectors.parquet",
                       **options)


def test_a_variety_stage_smaller_than_the_budget_is_an_error():
    with pytest.raises(ValueError, match=r"variety='20%' keeps 24 of 120 records, fewer than the budget of 30"):
        sftpick.select(scores(judge=judge_ratings()), 30, strategy="lift", embeddings=VECTORS)


def test_run_checks_lift_options_before_scoring(tmp_path):
    result = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "out"), "--scorers", "len",
                                      "--by", "len", "--strategy", "lift", "--explained-variance", "2"])
    assert result.exit_code == 2 and "explained_variance=2.0 should be a share" in one_line_error(result.output)
    assert not (tmp_path / "out" / "cache").exists()


def test_cli_select_with_lift(tmp_path):
    table = tmp_path / "scores.parquet"
    result = CliRunner().invoke(app, ["score", str(SAMPLE), "-o", str(table), "--scorers", "mtld", "--no-progress"])
    assert result.exit_code == 0, result.output
    save_embeddings(embeddings_path(table), np.arange(N), VECTORS, {"model": DEFAULT_EMBEDDER, "text": "whole"})
    subset = tmp_path / "subset.jsonl"
    result = CliRunner().invoke(app, ["select", str(SAMPLE), "--scores", str(table), "-o", str(subset),
                                      "--strategy", "lift", "--by", "mtld", "--variety", "50%", "--budget", "12",
                                      "--order", "pick"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "subset.manifest.json").read_text())
    assert manifest["selection"]["strategy"] == "lift" and manifest["selection"]["variety"] == "50%"
    assert manifest["selection"]["stats"]["variety_kept"] == 60 and manifest["counts"]["selected"] == 12
    mtld = pq.read_table(table).column("mtld").to_numpy()
    survivors = np.argsort(-reference_row_variances(VECTORS), kind="stable")[:60]
    survivors = survivors[~np.isnan(mtld[survivors])]
    expected = sorted(survivors.tolist(), key=lambda p: (-mtld[p], p))[:12]
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert [json.loads(line) for line in subset.read_text().splitlines()] == [records[p] for p in expected]
