"""A scoring run killed with SIGKILL and started again does not rescore finished records
and ends with the same table as an uninterrupted run."""
import sys

import numpy as np
import pyarrow.parquet as pq
from processes import kill_when

import sftpick


def test_killed_run_resumes_without_rescoring(tmp_path, real_records_path):
    out = tmp_path / "scores.parquet"
    shards = tmp_path / "scores.parquet.cache"
    command = [sys.executable, "-m", "sftpick.cli", "score", str(real_records_path), "-o", str(out),
               "--device", "cpu", "--shard-size", "4", "--chunk-size", "4", "--no-progress"]  # a saved part per chunk
    kill_when(command, lambda: len(list(shards.glob("*/shard-*.parquet"))) >= 2, what="two shards written")
    assert not out.exists()
    finished = sum(pq.read_metadata(p).num_rows for p in shards.glob("*/shard-*.parquet"))
    assert 2 * 4 <= finished < 26

    resumed = sftpick.score(real_records_path, out, device="cpu", shard_size=4, progress=False)
    assert resumed.timings["ifd"]["from_cache"] == finished
    assert resumed.timings["ifd"]["scored_now"] == 26 - finished

    fresh = sftpick.score(real_records_path, device="cpu", progress=False)  # no cache at all
    on_disk = pq.read_table(out)
    assert on_disk.column("row").to_pylist() == fresh.table.column("row").to_pylist()
    assert on_disk.column("id").to_pylist() == fresh.table.column("id").to_pylist()
    np.testing.assert_allclose(on_disk.column("ifd").to_numpy(), fresh.table.column("ifd").to_numpy(), rtol=1e-5)

    again = sftpick.score(real_records_path, out, device="cpu", progress=False)
    assert again.timings["ifd"]["scored_now"] == 0  # everything comes from the cache now
