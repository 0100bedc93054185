"""Filters on any column (`--where`), Superfiltering's IFD band, choosing without a ranking
column, and the pick order (`rank`, `--order pick`)."""
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import sftpick
from sftpick.cli import app
from sftpick.embeddings import load_embeddings
from sftpick.filters import apply, ifd_band, parse_where
from sftpick.models import embedded_embedder_path
from sftpick.selectors.facility import euclidean_similarity, lazy_greedy_dense
from cli_errors import one_line_error

SAMPLE = Path(sftpick.__file__).parent / "data" / "sample_alpaca.jsonl"


def table(**columns):
    n = len(next(iter(columns.values())))
    return pa.table({"row": np.arange(n), "id": [f"r{i}" for i in range(n)], **columns})


@pytest.mark.parametrize(("expression", "column", "op", "value"), [
    ("judge>=4.5", "judge", ">=", 4.5), (" ifd < 1 ", "ifd", "<", 1.0), ("len!=0", "len", "!=", 0.0),
    ("knn_6>-1e-3", "knn_6", ">", -0.001), ("reward==.5", "reward", "==", 0.5)])
def test_parse_where(expression, column, op, value):
    condition = parse_where(expression)
    assert (condition.column, condition.op, condition.value) == (column, op, value)


@pytest.mark.parametrize("expression", ["judge=>4", "judge >= high", ">= 4", "judge >= 4 and x < 2", ""])
def test_parse_where_names_a_bad_expression(expression):
    with pytest.raises(ValueError, match="should be COLUMN OP NUMBER"):
        parse_where(expression)


def test_filters_count_each_reason_once_and_nan_fails():
    scores = table(ifd=[0.5, 0.95, 1.2, np.nan, 0.99, 0.2], judge=[5.0, 4.0, 5.0, 5.0, np.nan, 4.5])
    kept, dropped = apply(scores, ifd_band(1.0, 0.9) + [parse_where("judge>=4.5")])
    assert kept.tolist() == []  # 0.95 fails judge, 0.99 has no judge rating
    assert dropped == {"ifd >= 1 (instruction does not help)": 2,  # 1.2 and NaN
                       "ifd <= 0.9 (below --min-ifd)": 2, "not judge >= 4.5 (--where)": 2}
    assert sum(dropped.values()) + len(kept) == scores.num_rows


def test_select_with_where_and_the_band():
    scores = table(ifd=np.linspace(0.5, 1.2, 15), judge=[5.0, 3.0, 4.6] * 5)
    selection = sftpick.select(scores, 10, where=["judge>=4.5"], min_ifd=0.6)
    ifd = scores.column("ifd").to_numpy()
    judge = scores.column("judge").to_numpy()
    assert all(0.6 < ifd[r] < 1 and judge[r] >= 4.5 for r in selection.rows)
    assert selection.order.tolist() == sorted(selection.rows.tolist(), key=lambda r: -ifd[r])
    assert selection.params["where"] == ["judge>=4.5"] and selection.params["min_ifd"] == 0.6
    assert len(selection.rows) + sum(selection.dropped.values()) == 15


def test_where_on_a_missing_column_is_named():
    with pytest.raises(ValueError, match="filter judge >= 4.5 names no column of the scores"):
        sftpick.select(table(ifd=[0.5, 0.6]), 1, where=["judge>=4.5"])


def test_topk_without_ifd_asks_for_a_column():
    with pytest.raises(ValueError, match="strategy 'topk' ranks by a score column .* pass by="):
        sftpick.select(table(len=[3, 1, 2]), 1)


def test_a_diversity_strategy_chooses_by_coverage_without_a_ranking():
    points = np.array([[1, 0], [0.99, 0.14], [0, 1], [-1, 0], [0.14, 0.99]], dtype=np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    selection = sftpick.select(table(len=[5, 4, 3, 2, 1]), 3, strategy="kcenter", embeddings=points)
    assert selection.order.tolist() == [0, 3, 2]  # input order starts, then farthest first
    assert any("coverage alone" in note for note in selection.notes)
    with pytest.raises(ValueError, match="nothing ranks them"):
        sftpick.select(table(len=[5, 4, 3, 2, 1]), 2, strategy="kcenter", pool=3, embeddings=points)


def test_run_writes_rank_and_the_subset_in_pick_order(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(out), "--scorers", "len,mtld", "--by", "len",
                                      "--budget", "8", "--where", "mtld>=40", "--order", "pick", "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = pq.read_table(out / "scores.parquet").to_pandas()
    chosen = scores[scores.selected].sort_values("rank")
    assert chosen["rank"].tolist() == list(range(1, 9)) and scores[~scores.selected]["rank"].isna().all()
    assert (chosen["mtld"] >= 40).all() and chosen["len"].is_monotonic_decreasing
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    subset = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert subset == [records[row] for row in chosen["row"]]
    manifest = json.loads((out / "manifest.json").read_text())
    dropped = manifest["selection"]["dropped"]["not mtld >= 40 (--where)"]
    assert dropped == int((~(scores["mtld"] >= 40)).sum()) > 0
    assert "not mtld &gt;= 40 (--where)" in (out / "report.html").read_text()


def test_run_checks_filters_and_order_before_scoring(tmp_path):
    for args, fragment in ((["--where", "judge>=4.5"], "filter judge >= 4.5 names no column"),
                           (["--order", "best"], "order='best' is not one of input, pick"),
                           (["--where", "len=>3"], "should be COLUMN OP NUMBER")):
        result = CliRunner().invoke(app, ["run", str(SAMPLE), "-o", str(tmp_path / "out"), "--scorers", "len",
                                          "--by", "len", *args])
        assert result.exit_code == 2 and fragment in one_line_error(result.output), result.output
    assert not (tmp_path / "out" / "cache").exists()


def test_facility_euclidean_kernel_makes_superfiltering_s_picks():
    """Superfiltering's do_fla.py objective (submodlib, dense, euclidean): the same 40 picks,
    in the same order, as submodlib-py 0.0.3 made on the same embeddings (fixture)."""
    fixtures = Path(__file__).parent / "fixtures"
    vectors = np.load(fixtures / "sample_alpaca_minilm.npy", allow_pickle=False)
    golden = json.loads((fixtures / "superfiltering_fla_picks.json").read_text())
    selection = sftpick.select(table(len=np.ones(len(vectors))), golden["budget"], strategy="facility",
                               kernel="euclidean", embeddings=vectors)
    assert selection.order.tolist() == golden["picks"]
    cosine = sftpick.select(table(len=np.ones(len(vectors))), golden["budget"], strategy="facility", embeddings=vectors)
    assert cosine.stats["kernel"] == "cosine" and len(set(cosine.order) & set(golden["picks"])) < golden["budget"]


def superfiltering_embeddings(texts: list[str]) -> np.ndarray:
    """do_fla.py's get_sentence_embeddings, recomputed with transformers: all-MiniLM-L6-v2,
    truncated at its tokenizer's limit (512), mean-pooled over the attention mask, normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = embedded_embedder_path()
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    for start in range(0, len(texts), 16):
        encoded = tokenizer(texts[start:start + 16], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            tokens = model(**encoded)[0]
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out)


def test_facility_euclidean_embeds_as_superfiltering_does_end_to_end(tmp_path):
    """With Superfiltering's kernel, sftpick embeds the records as do_fla.py does (512 tokens,
    not sentence-transformers' 256): on the sample, whose long records the two cut apart, the
    vectors agree and the 40 picks are do_fla's objective's, in order."""
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    texts = [r["instruction"] + "\n" + r["input"] + "\n" + r["output"] for r in records]  # combine_sentences
    reference = superfiltering_embeddings(texts)
    from transformers import AutoTokenizer

    lengths = [len(ids) for ids in AutoTokenizer.from_pretrained(embedded_embedder_path())(texts)["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > 256]
    assert len(long) >= 5  # records that a 256-token embedder would cut
    sftpick.score(SAMPLE, tmp_path / "s.parquet", scorers=["len"], progress=False)
    selection = sftpick.select(tmp_path / "s.parquet", 40, strategy="facility", kernel="euclidean", by="len",
                               data=SAMPLE)
    assert selection.params["embeddings"]["max_length"] == 512
    rows, vectors, meta = load_embeddings(tmp_path / "s.embeddings-all-minilm-l6-v2-len512.parquet")
    cosines = np.einsum("ij,ij->i", vectors, reference[rows])
    assert cosines.min() > 0.9999 and meta["max_length"] == 512, cosines[np.isin(rows, long)]
    expected, _ = lazy_greedy_dense(euclidean_similarity(reference[rows]), 40)
    assert selection.order.tolist() == rows[expected].tolist()
    short = sftpick.select(tmp_path / "s.parquet", 40, strategy="facility", kernel="euclidean", by="len",
                           data=SAMPLE, embed_max_length=256)
    assert short.order.tolist() != selection.order.tolist()  # the length moves the picks


def test_facility_rejects_an_unknown_kernel():
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="kernel='rbf' is not one of cosine, euclidean"):
        sftpick.select(table(len=[1, 2, 3, 4]), 2, strategy="facility", kernel="rbf", embeddings=vectors)
