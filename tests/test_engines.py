"""The engine seam without a cluster: engine options checked before any work, the scorer
contract's promise that `config()` (the cache key) is known before a model loads, and how
the Ray engine sizes its actors."""
import json
import sys

import pytest
from tiny_reward import build_tiny_reward_model

import sftpick
from sftpick.engines import LocalEngine, check_engine
from sftpick.engines.base import redact_address
from sftpick.engines.ray import actor_cpus
from sftpick.scorers import SCORERS, make_scorer

LOADED = ("lm_", "rater_", "complexity_", "model_", "tokenizer_", "client_")  # what setup() loads


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory):
    return str(build_tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm"))


def _options(name: str, reward_folder: str) -> dict:
    return {"reward": {"reward_model": reward_folder, "device": "cpu"},
            "judge": {"judge_url": "http://127.0.0.1:9/v1", "judge_model": "m"}}.get(name, {})


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_config_is_known_before_the_model_loads(name, reward_folder):
    scorer = make_scorer(name, **_options(name, reward_folder))
    scorer.check()
    config = scorer.config()
    assert config["scorer"] == name and json.dumps(config, default=str)
    assert not [attribute for attribute in LOADED if hasattr(scorer, attribute)]


@pytest.mark.parametrize("name", ["len", "mtld", "rule", "knn", "reward", "judge"])
def test_config_is_the_same_after_setup(name, reward_folder):
    scorer = make_scorer(name, **_options(name, reward_folder))
    before = scorer.config()
    scorer.setup()
    assert scorer.config() == before


def test_ifd_config_is_the_same_before_and_after_loading(ifd_scorer):
    from sftpick.scorers.ifd import IFDScorer

    before = IFDScorer(device="cpu").config()
    assert before == ifd_scorer.config()
    assert before["model_revision"] == ifd_scorer.lm_.revision and before["dtype"] == ifd_scorer.lm_.dtype


@pytest.mark.parametrize("options, message", [
    ({"engine": "spark"}, "unknown engine 'spark'; valid engines: local, ray"),
    ({"workers": 0}, "workers=0 should be a whole number >= 1"),
    ({"gpus_per_worker": 1}, "gpus_per_worker=1 applies to engine 'ray' only"),
    ({"ray_address": "auto"}, "ray_address='auto' applies to engine 'ray' only"),
    ({"engine": "ray", "gpus_per_worker": -1}, "gpus_per_worker=-1 should be a number >= 0"),
    ({"engine": "ray", "device": "cuda"}, "needs GPUs for its workers: add --gpus-per-worker 1"),
    ({"engine": "ray", "device": "cuda:1", "gpus_per_worker": 1}, "name no index: --device cuda"),
])
def test_engine_options_fail_before_the_data_is_read(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):  # the file does not exist: nothing was read
        sftpick.score(tmp_path / "missing.jsonl", scorers=["len"], **options)


def test_engine_ray_without_ray_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'sftpick\[ray\]'"):
        check_engine("ray")
    with pytest.raises(ValueError, match=r"pip install 'sftpick\[ray\]'"):
        sftpick.run(tmp_path / "missing.jsonl", tmp_path / "out", 2, scorers=["len"], by="len", engine="ray")


@pytest.mark.parametrize("cpus, workers, expected", [(2, 2, 0.5), (2, 1, 1.0), (16, 4, 1.0), (1, 1, 0.5),
                                                     (4, 6, 0.5)])
def test_ray_actors_leave_cpu_for_ray_data(cpus, workers, expected):
    assert actor_cpus(cpus, workers) == expected
    assert workers * actor_cpus(cpus, workers) < cpus  # room for the read tasks: two 1-CPU actors on 2 CPUs hung


@pytest.mark.parametrize("address, shown", [("ray://alice:s3cret@head:10001", "ray://head:10001"),
                                            ("10.0.0.1:6379", "10.0.0.1:6379"), ("auto", "auto"), (None, None)])
def test_cluster_addresses_lose_their_credentials(address, shown):
    assert redact_address(address) == shown


def test_local_engine_sends_only_model_scorers_to_workers():
    from sftpick.scorers.ifd import IFDScorer
    from sftpick.scorers.mtld import MTLDScorer

    assert LocalEngine(2).distributes(IFDScorer(), 3) and not LocalEngine(2).distributes(MTLDScorer(), 3)
    assert not LocalEngine(1).distributes(IFDScorer(), 3) and not LocalEngine(2).distributes(IFDScorer(), 1)
    assert LocalEngine(2).settings() == {"engine": "local", "workers": 2}


def test_manifest_records_the_engine_and_device(tmp_path, real_records_path):
    sftpick.score(real_records_path, tmp_path / "s.parquet", scorers=["mtld"], progress=False)
    import torch

    engine = json.loads((tmp_path / "s.manifest.json").read_text())["engine"]
    assert engine == {"engine": "local", "workers": 1, "device": "cuda" if torch.cuda.is_available() else "cpu",
                      "chunk_size": 10000, "shard_size": 64}
