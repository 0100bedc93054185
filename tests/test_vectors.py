"""Vectors as features (issue 11, item 4), with the real embedded MiniLM: each record's vector
is cached by content and embedder (adding a record embeds one record; a new k embeds
nothing), the kNN search runs over the cached vectors, vectors can be stored as float16, a
vectors file made by another embedder is refused, and selectors read only their candidates'
vectors, in blocks, in worker processes too."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sftpick
from sftpick import api
from sftpick.embeddings import embed_examples, embeddings_path, load_embeddings, save_embeddings, vector_config
from sftpick.io import read_dataset
from sftpick.selectors.kcenter import KCenter
from sftpick.selectors.vectors import table_vectors
from test_indicators import FIXTURE, _brute_force_kth


@pytest.fixture(scope="module")
def records():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def vectors():
    """The 30 fixture records' vectors, embedded here directly (no cache)."""
    return embed_examples(read_dataset(FIXTURE).examples)


def test_adding_a_record_embeds_that_record_only_and_a_new_k_embeds_nothing(tmp_path, records, vectors):
    first, more, cache = tmp_path / "first.json", tmp_path / "more.json", tmp_path / "cache"
    first.write_text(json.dumps(records[:-1]))
    more.write_text(json.dumps(records))
    assert sftpick.score(first, scorers=["knn_6"], cache_dir=cache, progress=False).timings["knn"]["scored_now"] == 29
    grown = sftpick.score(more, scorers=["knn_6"], cache_dir=cache, progress=False)
    assert grown.timings["knn"]["scored_now"] == 1  # 29 vectors came from the cache
    # the search ran again over all 30 (every distance depends on every record)
    np.testing.assert_allclose(grown.table.column("knn_6").to_numpy(), _brute_force_kth(vectors, 6), atol=2e-3)
    other_k = sftpick.score(more, scorers=["knn_3"], cache_dir=cache, progress=False)
    assert other_k.timings["knn"]["scored_now"] == 0
    np.testing.assert_allclose(other_k.table.column("knn_3").to_numpy(), _brute_force_kth(vectors, 3), atol=2e-3)
    assert len(list(cache.glob("vectors-*"))) == 1  # one store for one embedder, whatever k


def test_vectors_stored_as_float16_take_half_the_space_and_stay_close(tmp_path, vectors):
    out16, out32 = tmp_path / "f16" / "scores.parquet", tmp_path / "f32" / "scores.parquet"
    full = sftpick.score(FIXTURE, out32, scorers=["knn_6"], progress=False)
    half = sftpick.score(FIXTURE, out16, scorers=["knn_6"], vectors_dtype="float16", progress=False)
    assert pq.read_schema(embeddings_path(out16)).field("vector").type.value_type == pa.float16()
    rows, stored, meta = load_embeddings(embeddings_path(out16))
    assert meta["dtype"] == "float16" and stored.dtype == np.float32  # arithmetic in float32
    np.testing.assert_allclose(stored, vectors, atol=1e-3)
    np.testing.assert_allclose(half.table.column("knn_6").to_numpy(), full.table.column("knn_6").to_numpy(), atol=2e-3)
    cached = pq.read_table(next((tmp_path / "f16" / "scores.parquet.cache").glob("vectors-*/shard-*.parquet")))
    assert cached.schema.field("vector").type.value_type == pa.float16() and cached.num_rows == 30
    assert half.scorers[0]["dtype"] == "float16" and half.scorers[0]["revision"].startswith("local:")


def test_a_vectors_file_made_by_another_embedder_revision_is_refused(tmp_path, vectors, monkeypatch):
    examples = read_dataset(FIXTURE).examples
    table = pa.table({"row": [e.row for e in examples], "content_hash": [e.content_hash for e in examples]})
    path = tmp_path / "vectors.parquet"
    asked = vector_config("all-minilm-l6-v2", "whole")
    save_embeddings(path, table.column("row").to_numpy(), vectors, {**asked, "revision": "local:0000"})
    with pytest.raises(ValueError, match=r"made by model 'all-minilm-l6-v2', revision 'local:0000'.*"
                                         r"strategy 'pre_experience' asks for .*revision 'local:(?!0000)"):
        table_vectors(table, np.arange(30), path, lambda: examples, "pre_experience", "all-minilm-l6-v2", "whole")
    save_embeddings(path, table.column("row").to_numpy(), vectors, asked)  # made as asked: used, nothing embedded
    monkeypatch.setattr("sftpick.embeddings.embed_examples", _no_embedding)
    got, meta = table_vectors(table, np.array([4, 2]), path, lambda: examples, "pre_experience", "all-minilm-l6-v2",
                              "whole")
    np.testing.assert_array_equal(got, vectors[[4, 2]])


def test_selectors_read_their_candidates_vectors_only_in_blocks(tmp_path, monkeypatch):
    out = tmp_path / "run"
    sftpick.run(FIXTURE, out, 5, scorers=["len", "knn_6"], by="len", progress=False)
    path = out / "scores.embeddings.parquet"
    every_row, every_vector, _ = load_embeddings(path)
    assert len(every_row) == 30
    monkeypatch.setattr("sftpick.embeddings.READ_BLOCK", 7)  # the 30 rows come in 5 blocks
    wanted = every_row[[25, 3, 9, 10]]
    rows, got, _ = load_embeddings(path, wanted)
    assert sorted(rows.tolist()) == sorted(wanted.tolist())
    np.testing.assert_array_equal(got, every_vector[np.isin(every_row, wanted)])
    seen = {}

    def spy(self, table, budget, embeddings=None):
        seen["shape"] = embeddings.shape
        return original(self, table, budget, embeddings)
    original = KCenter.select
    monkeypatch.setattr(KCenter, "select", spy)
    monkeypatch.setattr("sftpick.embeddings.embed_examples", _no_embedding)
    selection = api.select(out / "scores.parquet", 4, strategy="kcenter", by="len", pool=12)
    assert seen["shape"] == (12, 384) and len(selection.rows) == 4  # the pool's vectors, from the file


def test_run_with_knn_vectors_does_not_read_its_input_again_to_select(tmp_path, monkeypatch):
    def no_second_read(*args, **kwargs):
        raise AssertionError("the input was read again although the kNN vectors cover every candidate")
    monkeypatch.setattr("sftpick.api.read_dataset", no_second_read)
    _, selection = sftpick.run(FIXTURE, tmp_path / "out", 5, scorers=["len", "knn_6"], by="len",
                               strategy="kcenter", progress=False)
    assert len(selection.rows) == 5 and selection.params["embeddings"]["model"] == "all-minilm-l6-v2"


def test_knn_embeds_in_worker_processes_with_the_same_result(tmp_path):
    alone = sftpick.score(FIXTURE, scorers=["knn_6"], progress=False, shard_size=8)
    pooled = sftpick.score(FIXTURE, scorers=["knn_6"], progress=False, shard_size=8, workers=2)
    np.testing.assert_allclose(pooled.table.column("knn_6").to_numpy(), alone.table.column("knn_6").to_numpy(),
                               atol=1e-5)
    assert pooled.timings["knn"]["scored_now"] == 30


def _no_embedding(*args, **kwargs):
    raise AssertionError("embedded although the vectors were there")
