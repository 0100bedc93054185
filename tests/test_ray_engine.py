"""The ray engine on a real local Ray cluster (2 CPUs, started once for this module): the same
table as the local engine (JSONL and Parquet inputs read by Ray Data tasks), a worker killed
mid-run loses and duplicates nothing, a run that cannot get resources or make progress fails
with a clear message in bounded time, and the CLI's `--engine ray` joins a running cluster."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

import pyarrow as pa
from test_stream import varied_records, write_jsonl

import sftpick
from sftpick import io
from sftpick.engines import EngineError
from sftpick.io import Source
from sftpick.scorers.length import LengthScorer
from sftpick.writers import file_sha256

ray = pytest.importorskip("ray", reason="the ray engine needs pip install 'sftpick[ray]'")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def six_records(tmp_path, real_records_path):
    path = tmp_path / "six.json"
    path.write_text(json.dumps(json.loads(real_records_path.read_text())[:6]))
    return path


def _table(path, output=None, **options):
    result = sftpick.score(path, output, progress=False, shard_size=5, **options)
    return result.table.to_pydict(), sorted((r.row, r.reason) for r in result.rejects)


def _assert_same(one: dict, two: dict, rtol: float = 0.0) -> None:
    assert one.keys() == two.keys()
    for name, values in one.items():
        if isinstance(values[0], float):
            np.testing.assert_allclose(two[name], values, rtol=rtol, err_msg=name)
        else:
            assert two[name] == values, name


def test_len_and_mtld_stay_in_the_driver_and_give_the_local_table(cluster, tmp_path, real_records_path):
    local = _table(real_records_path, scorers=["len", "mtld"])
    output = tmp_path / "scores.parquet"
    on_ray = _table(real_records_path, output, scorers=["len", "mtld"], engine="ray", workers=2)
    _assert_same(local[0], on_ray[0])
    assert local[1] == on_ray[1] and len(local[0]["row"]) == 26
    engine = json.loads((tmp_path / "scores.manifest.json").read_text())["engine"]
    assert engine["engine"] == "ray" and engine["workers"] == 2 and engine["device"] == "cpu"
    assert engine["cpus_per_worker"] == 0.5  # two actors on a 2-CPU cluster leave room for Ray Data's tasks


def test_curation_on_ray_gives_the_local_removals(cluster, tmp_path, real_records_path):
    """Near duplicates (band keys grouped by Ray Data) and test-set matches, records read by
    Ray Data tasks: the same rows removed, naming the same twins and test records."""
    records = json.loads(real_records_path.read_text())
    copies = [{**r, "instruction": "  " + r["instruction"].upper() + " !"} for r in records[:5]]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records + copies + records[:2]))
    tests = tmp_path / "tests.json"
    tests.write_text(json.dumps(records[20:22]))
    options = {"scorers": ["len"], "dedup": "near", "decontaminate": [tests]}
    local = _table(pool, **options)
    on_ray = _table(pool, tmp_path / "scores.parquet", engine="ray", workers=2, **options)
    _assert_same(local[0], on_ray[0])
    removed = [why for why in on_ray[0]["removed"] if why is not None]
    assert sorted(set(removed)) == ["contaminated", "exact duplicate", "near duplicate"] and len(removed) == 9


def test_ifd_gives_the_local_table(cluster, six_records):
    local = _table(six_records, scorers=["ifd"], device="cpu")
    on_ray = _table(six_records, scorers=["ifd"], engine="ray")
    _assert_same(local[0], on_ray[0], rtol=1e-5)
    assert np.isfinite(local[0]["ifd"]).sum() >= 5


def test_knn_embeds_on_the_actors_and_gives_the_local_table(cluster, tmp_path, real_records_path):
    local = _table(real_records_path, scorers=["knn_6"])
    on_ray = _table(real_records_path, tmp_path / "scores.parquet", scorers=["knn_6"], engine="ray", workers=2)
    _assert_same(local[0], on_ray[0], rtol=1e-5)  # the embedding step on the actors, the search here
    assert (tmp_path / "scores.embeddings.parquet").exists()


@pytest.fixture
def damaged_jsonl(tmp_path, real_records_path):
    """60 records, the first 15 repeated at the end, one line not UTF-8, CRLF endings."""
    records = varied_records(real_records_path, 60)
    lines = write_jsonl(tmp_path / "d.jsonl", records + records[:15]).rstrip(b"\n").split(b"\n")
    lines[40] = lines[40].replace(b"caf\xc3\xa9", b"caf\xe9")
    (tmp_path / "d.jsonl").write_bytes(b"\r\n".join(lines) + b"\r\n")
    return tmp_path / "d.jsonl"


def test_ray_data_reads_a_jsonl_input_in_parts_and_gives_the_local_table(cluster, tmp_path, damaged_jsonl,
                                                                        monkeypatch):
    """Read tasks run while kNN's actors embed (2 CPUs): parts of ~2 KB, two chunks (each
    starts its own actor pool, so more chunks only cost time)."""
    monkeypatch.setattr(io.source, "PART_BYTES", 2000)
    assert len(Source(damaged_jsonl).parts()) > 10
    options = {"scorers": ["len", "knn_3"], "chunk_size": 40}
    local = _table(damaged_jsonl, **options)
    on_ray = _table(damaged_jsonl, tmp_path / "s.parquet", engine="ray", workers=2, **options)
    _assert_same(local[0], on_ray[0], rtol=1e-5)
    assert on_ray[0]["row"] == [r for r in range(75) if r != 40]
    assert len(on_ray[1]) == 1 and on_ray[1][0][0] == 40 and on_ray[1][0][1].startswith("not valid UTF-8")
    (reject,) = [json.loads(line) for line in (tmp_path / "s.rejects.jsonl").read_text().splitlines()]
    assert (reject["row"], reject["line"]) == (40, 41)
    manifest = json.loads((tmp_path / "s.manifest.json").read_text())
    assert manifest["input"]["sha256"] == file_sha256(damaged_jsonl)
    assert [manifest["counts"][k] for k in ("input", "scored", "rejected")] == [75, 74, 1]


def test_ray_data_reads_a_parquet_input_by_row_groups(cluster, tmp_path, real_records_path):
    records = varied_records(real_records_path, 40)
    records[3] = {"instruction": "a record without output"}
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet", row_group_size=9)
    local = _table(tmp_path / "d.parquet", scorers=["len", "mtld"], chunk_size=10)
    on_ray = _table(tmp_path / "d.parquet", scorers=["len", "mtld"], chunk_size=10, engine="ray")
    _assert_same(local[0], on_ray[0])
    assert local[1] == on_ray[1] == [(3, "missing field 'output'")]


def test_an_input_the_workers_cannot_read_is_a_clear_error(cluster, tmp_path, damaged_jsonl, monkeypatch):
    """As on a cluster whose nodes do not see the driver's disk: here the file goes after the
    driver has cut it into parts."""
    from sftpick.engines import make_engine

    source = Source(damaged_jsonl)
    parts = source.parts(3000)
    monkeypatch.setattr(source, "parts", lambda: parts)
    damaged_jsonl.unlink()
    with make_engine("ray") as engine, pytest.raises(EngineError, match="not readable on a Ray worker's node"):
        list(engine.chunks(source, 16))


class DiesOnce(LengthScorer):
    """`len`, except that the worker which finds the marker file deletes it and SIGKILLs its own
    process; it says it runs a model, so the engine ships it to the actors as it does IFD."""

    runs_a_model = True

    def __init__(self, model: str = "smollm2-135m", *, trust_remote_code: bool = False, marker: str = ""):
        super().__init__(model=model, trust_remote_code=trust_remote_code)
        self.marker = marker

    def score(self, batch):
        time.sleep(0.2)  # the other shards are still in flight when the kill comes
        try:
            os.remove(self.marker)
        except FileNotFoundError:
            return super().score(batch)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, tmp_path, real_records_path):
    from ray import cloudpickle

    from sftpick.engines import make_engine
    from sftpick.engines.stream import score_examples
    from sftpick.io import read_dataset

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    marker = tmp_path / "kill-me"
    marker.touch()
    examples = read_dataset(real_records_path).examples
    scorer = DiesOnce(marker=str(marker))
    scorer.setup()
    with make_engine("ray", workers=2) as engine:
        table, rejects, _ = score_examples(examples, [scorer], cache_dir=tmp_path / "cache", shard_size=3,
                                           progress=False, engine=engine)
    assert not marker.exists()  # a worker did die
    local, _, _ = score_examples(examples, [LengthScorer()], cache_dir=None, shard_size=3, progress=False)
    assert table["len"].tolist() == local["len"].tolist() and not rejects
    saved = pq.read_table([*tmp_path.glob("cache/len-*/shard-*.parquet")]).column("content_hash").to_pylist()
    assert len(saved) == len(set(saved)) == len({e.content_hash for e in examples})


def test_a_worker_that_cannot_load_its_model_raises_that_error(cluster, tmp_path, real_dataset):
    from sftpick.engines import make_engine
    from sftpick.models import ModelNotFoundError
    from sftpick.scorers.reward import RewardScorer

    scorer = RewardScorer(reward_model=str(tmp_path / "no-such-model"), device="cpu")  # loads only in the actor
    with make_engine("ray") as engine, pytest.raises(ModelNotFoundError, match="cannot load reward model"):
        list(engine.scored_shards(scorer, [real_dataset.examples[:2], real_dataset.examples[2:4]]))


def test_more_gpus_than_the_cluster_has_fails_before_any_work(cluster, real_records_path):
    started = time.perf_counter()
    with pytest.raises(EngineError, match=r"needs 2 GPU\(s\); the Ray cluster has 0"):
        sftpick.score(real_records_path, scorers=["len"], engine="ray", workers=2, gpus_per_worker=1, progress=False)
    assert time.perf_counter() - started < 10


def test_cli_engine_ray_joins_a_running_cluster(cluster, tmp_path, real_records_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "sftpick.cli", "run", str(real_records_path), "-o", str(out),
                             "--scorers", "len,mtld", "--by", "mtld", "--budget", "5", "--engine", "ray",
                             "--ray-address", cluster, "--no-progress"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["engine"] == "ray" and manifest["engine"]["ray_address"] == cluster
    assert manifest["counts"]["selected"] == 5 and manifest["counts"]["scored"] == 26


def test_a_run_that_cannot_make_progress_fails_in_bounded_time(cluster, monkeypatch, real_records_path):
    """Another job holds every CPU of the cluster: no actor can start."""

    @ray.remote(num_cpus=2)
    class Hog:
        def ready(self) -> bool:
            return True

    hog = Hog.remote()
    ray.get(hog.ready.remote())
    monkeypatch.setenv("SFTPICK_RAY_STALL_SECONDS", "5")
    started = time.perf_counter()
    try:
        with pytest.raises(EngineError, match="made no progress for 5 s"):
            sftpick.score(real_records_path, scorers=["knn_6"], engine="ray", progress=False)
        assert time.perf_counter() - started < 30
        time.sleep(6)  # Ray Data gives up on the actors 5 s after sftpick does and ends that execution
    finally:
        ray.kill(hog)
