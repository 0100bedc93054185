"""Scoring in worker processes (engines/pool.py) gives the same table as one process, for
each scorer that runs a model, with more shards than workers so that shards are shared out;
the workers load their model once for the whole run, not once per chunk."""
import os

import numpy as np
import pytest
from tiny_reward import build_tiny_reward_model

import sftpick
from sftpick.engines.stream import score_stream
from sftpick.engines.pool import worker_devices
from sftpick.io import Chunk
from sftpick.scorers.length import LengthScorer


def _scored(path, **options):
    result = sftpick.score(path, device="cpu", progress=False, shard_size=5, **options)
    return result.table.to_pydict(), sorted((r.row, r.reason) for r in result.rejects)


def test_ifd_in_two_workers_matches_one_process(real_records_path):
    (one, one_rejects), (two, two_rejects) = (_scored(real_records_path, workers=n) for n in (1, 2))
    assert two["row"] == one["row"] and two["id"] == one["id"]
    np.testing.assert_allclose(two["ifd"], one["ifd"], rtol=1e-5)
    np.testing.assert_allclose(two["loss_direct"], one["loss_direct"], rtol=1e-5)
    assert two_rejects == one_rejects


def test_reward_in_two_workers_matches_one_process(tmp_path, real_records_path):
    folder = str(build_tiny_reward_model(tmp_path / "rm"))
    (one, _), (two, _) = (_scored(real_records_path, scorers=["reward"], reward_model=folder, workers=n)
                          for n in (1, 2))
    assert two["row"] == one["row"] and len(one["row"]) == 26
    np.testing.assert_allclose(two["reward"], one["reward"], atol=1e-5)
    assert np.ptp(one["reward"]) > 0


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_workers_share_a_non_cuda_device(device):
    assert worker_devices(device, 3) == [device] * 3


def test_a_worker_that_cannot_load_its_model_raises_that_error(tmp_path, real_dataset):
    from sftpick.engines.pool import WorkerPool
    from sftpick.models import ModelNotFoundError
    from sftpick.scorers.reward import RewardScorer

    scorer = RewardScorer(reward_model=str(tmp_path / "no-such-model"), device="cpu")
    shards = [real_dataset.examples[:2], real_dataset.examples[2:4]]
    with pytest.raises(ModelNotFoundError, match="cannot load reward model"):
        with WorkerPool(scorer, 2) as pool:
            list(pool.scored_shards(shards))


class LogsSetups(LengthScorer):
    """`len`, writing its process id to `log` at each setup(); says it runs a model, so the
    local engine's workers take it."""

    runs_a_model = True

    def __init__(self, model: str = "smollm2-135m", *, trust_remote_code: bool = False, log: str = ""):
        super().__init__(model=model, trust_remote_code=trust_remote_code)
        self.log = log

    def setup(self) -> None:
        super().setup()
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")


def test_workers_set_up_once_for_the_whole_run_and_stop_with_it(tmp_path, real_dataset):
    log = tmp_path / "setups"
    examples = real_dataset.examples
    chunks = [Chunk(examples[start: start + 8], []) for start in range(0, len(examples), 8)]  # 4 chunks
    scored = score_stream(chunks, [LogsSetups(log=str(log))], cache_dir=None, shard_size=2, progress=False,
                          workers=2)
    one = score_stream([Chunk(examples, [])], [LengthScorer()], cache_dir=None, progress=False)
    assert scored.table.column("len").to_pylist() == one.table.column("len").to_pylist()
    pids = [int(pid) for pid in log.read_text().split()]
    # This process, then each worker at most once (a worker still starting when the others have
    # scored every shard never sets up); a pool per chunk would log a new worker for each of the 4.
    assert pids[0] == os.getpid() and 2 <= len(pids) <= 3 and len(set(pids)) == len(pids)
    for pid in pids[1:]:
        with pytest.raises(ProcessLookupError):  # the pool closed with the run
            os.kill(pid, 0)
