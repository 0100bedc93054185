"""near_duplicates_ray (sftpick.curation.minhash_ray) on a local Ray cluster (2 CPUs, started
once for this module) gives exactly near_duplicates' result, with and without sketches: on real
records with planted copies, and on random keys with many collisions split over many groups."""
import json
import random

import numpy as np
import pytest

from test_minhash import FIXTURES, change_one_word, drop_words, record_text

from sftpick.curation import minhash_ray
from sftpick.curation.lsh import near_duplicates
from sftpick.curation.minhash import (
    DEFAULT_THRESHOLD,
    EMPTY_KEY,
    band_keys,
    lsh_params,
    signatures,
    sketches,
)
from sftpick.curation.minhash_ray import near_duplicates_ray

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_real_records_with_planted_copies(cluster):
    records = []
    for name in ("real_alpaca.json", "gsm8k_sample.json"):
        records += json.loads((FIXTURES / name).read_text())
    texts = [record_text(r) for r in records]
    rng = random.Random(0)
    copies = [drop_words(t, rng.choice([0.02, 0.05, 0.1, 0.2]), rng) for t in texts[::3]]
    copies += [change_one_word(t) for t in texts[:60] if len(t.split()) > 20]
    texts = texts + copies + ["", ""]
    rng.shuffle(texts)
    sigs = signatures(texts)
    keys = band_keys(sigs, *lsh_params(DEFAULT_THRESHOLD, sigs.shape[1]))
    plain = near_duplicates(keys)
    verified = near_duplicates(keys, sketches(sigs), DEFAULT_THRESHOLD)
    assert (verified >= 0).sum() > 80 and not np.array_equal(plain, verified)
    shuffle = ray.data.DataContext.get_current().shuffle_strategy
    assert np.array_equal(near_duplicates_ray(keys), plain)
    assert ray.data.DataContext.get_current().shuffle_strategy == shuffle  # its own is set on its dataset
    assert np.array_equal(near_duplicates_ray(keys, sketches(sigs), DEFAULT_THRESHOLD), verified)


def test_random_keys_with_many_collisions_over_many_groups(cluster, monkeypatch):
    """Keys drawn from 6 values a band collide everywhere; sketches are noisy copies of 10
    family sketches, so estimates spread over 0.2-1 and links pass and fail verification;
    _GROUP_ROWS = 100 spreads each band over 2 buckets (and some band keys are EMPTY_KEY)."""
    rng = np.random.default_rng(0)
    n, bands = 300, 5
    keys = rng.integers(0, 6, (n, bands)).astype(np.uint64)
    keys[rng.random((n, bands)) < 0.1] = EMPTY_KEY
    family = rng.integers(0, 256, (10, 64), dtype=np.uint8)[rng.integers(0, 10, n)]
    noise = rng.random((n, 64)) < rng.uniform(0, 0.6, (n, 1))
    sketch = np.where(noise, rng.integers(0, 256, (n, 64), dtype=np.uint8), family)
    monkeypatch.setattr(minhash_ray, "_GROUP_ROWS", 100)
    for args in [(), (sketch, 0.6), (sketch, 0.8)]:
        expected = near_duplicates(keys, *args)
        assert 0 < (expected >= 0).sum() < (n if not args else n - 50)
        assert np.array_equal(near_duplicates_ray(keys, *args), expected), args


def test_no_records_and_only_empty_texts_need_no_cluster():
    assert near_duplicates_ray(np.zeros((0, 14), dtype=np.uint64)).tolist() == []
    keys = np.full((3, 4), EMPTY_KEY)
    assert near_duplicates_ray(keys, np.zeros((3, 16), dtype=np.uint8), 0.7).tolist() == [-1, -1, -1]


def test_arguments_are_checked_before_ray_runs():
    keys = np.zeros((2, 3), dtype=np.uint64)
    with pytest.raises(ValueError, match="sketches and threshold should be given together"):
        near_duplicates_ray(keys, threshold=0.7)
    with pytest.raises(ValueError, match="keys should be a 2-D uint64 array"):
        near_duplicates_ray(keys.astype(np.float32))
