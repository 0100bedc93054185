"""Near duplicates with the band-key grouping done by Ray Data, as text-dedup does it with Spark
(`minhash_spark.py`: group by band and band hash, emit edges, union-find in the driver).

The (band, key, record) rows of all bands go into one Ray Dataset, grouped by a coarse group
number (the band, and the key modulo a number of buckets sized to about _GROUP_ROWS rows), so
that the rows of one band key always meet in one `map_groups` call and each call sorts many
band keys at once in numpy (a call per band key would cost ~0.2 ms each, minutes per million
records). Each call emits the same links as `lsh.near_duplicates` (member -> its band
group's lowest index); the driver collects them, verifies them with the sketches and takes
the clusters with the same numpy code (`lsh._resolve`), so the result
is equal to `near_duplicates`'.
"""
from __future__ import annotations

import numpy as np

from .lsh import _check_keys, _check_verification, _group_links, _resolve
from .minhash import EMPTY_KEY

_GROUP_ROWS = 2**20  # (group, key, record) rows a map_groups call sorts, about: 24 MiB


def near_duplicates_ray(keys: np.ndarray, sketches: np.ndarray | None = None,
                        threshold: float | None = None) -> np.ndarray:
    """`lsh.near_duplicates(keys, sketches, threshold)`, its band-key grouping on the Ray
    cluster that `ray.init` joined (or a local one it starts): the same int64 [n], -1 for a
    kept record, else the index of the kept record it duplicates. The links, 16 bytes a
    record and band at most, and their verification stay in the driver."""
    keys = _check_keys(keys)
    sketches, threshold = _check_verification(len(keys), sketches, threshold)
    try:
        import pyarrow as pa
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError("near_duplicates_ray needs Ray Data: pip install 'sftpick[ray]'") from error
    try:
        from ray.data.context import ShuffleStrategy
    except ImportError:  # Ray before 2.4x: only sort-based shuffles
        ShuffleStrategy = None
    n, bands = keys.shape
    band = np.tile(np.arange(bands, dtype=np.int64), n)
    flat = keys.ravel()
    index = np.repeat(np.arange(n, dtype=np.int64), bands)
    used = flat != EMPTY_KEY  # links nothing: not shipped
    band, flat, index = band[used], flat[used], index[used]
    empty = np.zeros(0, dtype=np.int64)
    sources, targets = [empty], [empty]
    if len(flat):
        buckets = max(1, -(-len(flat) // (bands * _GROUP_ROWS)))
        group = band * buckets + (flat % np.uint64(buckets)).astype(np.int64)
        rows = ray.data.from_arrow(pa.table({"group": group, "key": flat, "index": index}))
        # a sort-based shuffle: the hash shuffle's aggregator actors took ~10 s to start on 2 CPUs,
        # the sort 0.2 s (this dataset's copy of the DataContext; the global one is left alone)
        if ShuffleStrategy is not None:
            rows.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        links = rows.groupby("group").map_groups(_links, batch_format="numpy")
        for batch in links.iter_batches(batch_format="numpy", batch_size=None):
            sources.append(batch["source"].astype(np.int64))
            targets.append(batch["target"].astype(np.int64))
    return _resolve(np.concatenate(sources), np.concatenate(targets), n, sketches, threshold)


def _links(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The (member, head) links of the band keys of one group's rows, all of one band."""
    order = np.argsort(group["index"], kind="stable")
    source, target = _group_links(group["key"][order], group["index"][order])
    return {"source": source, "target": target}
