"""Engines run scorers over shards of examples: `local` (this process, or worker processes
for the scorers that run a model) and `ray` (a Ray Data actor pool on a cluster, with Ray Data
tasks parsing the input's parts). engines/base.py holds the contract, engines/stream.py the
driver that every engine's run goes through, engines/progress.py its progress display."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EngineError, OptionError, did_you_mean  # noqa: F401  (EngineError: importable from here)
from ..io import CHUNK_RECORDS
from ..options import option
from .base import Engine, trait  # noqa: F401  (the contract, importable from here)
from .local import LocalEngine


def _local_engine(workers: int, ray_address: str | None, gpus_per_worker: float) -> LocalEngine:
    return LocalEngine(workers)  # the Ray settings were refused by check_engine


def _ray_engine(workers: int, ray_address: str | None, gpus_per_worker: float) -> Engine:
    from .ray import RayEngine  # imported only when asked for: the base install has no Ray

    return RayEngine(workers, ray_address=ray_address, gpus_per_worker=gpus_per_worker)


ENGINES = {"local": _local_engine, "ray": _ray_engine}  # name -> factory(workers, ray_address, gpus_per_worker)


@dataclass(kw_only=True)
class EngineSettings:
    """Where and in what pieces the scorers run (the settings of every command that scores)."""

    engine: str = option("local", "Where scorers run: local (this machine) or ray (a Ray cluster; pip install "
                                  "'sftpick[ray]').", flags=("--engine",))
    workers: int = option(1, "Scoring processes (--engine ray: actors), each with its own model: on CUDA one per "
                             "GPU; on one CPU one process using every thread was faster (benchmarks/README.md).",
                          ge=1, what="a whole number")
    gpus_per_worker: float = option(0.0, "GPUs per Ray worker (--engine ray); 0.5 puts two on one GPU.", ge=0,
                                    what="a number")
    ray_address: str | None = option(None, "Ray cluster to join (--engine ray), e.g. ray://head:10001; default: "
                                           "RAY_ADDRESS, else a local cluster for this run.")
    chunk_size: int = option(CHUNK_RECORDS, "Records read and held in memory at a time (the unit of a saved part; "
                                            "scores, not records, are kept across parts).", ge=1,
                             what="a whole number")
    shard_size: int = option(64, "Records per saved shard (the unit of resume).", ge=1, what="a whole number")

    def check(self, device: str | None = None) -> None:
        check_engine(self.engine, workers=self.workers, ray_address=self.ray_address,
                     gpus_per_worker=self.gpus_per_worker, device=device)

    def make(self) -> Engine:
        """The engine (enter it to start it)."""
        return make_engine(self.engine, workers=self.workers, ray_address=self.ray_address,
                           gpus_per_worker=self.gpus_per_worker)


def check_engine(engine: str, *, workers: int = 1, ray_address: str | None = None,
                 gpus_per_worker: float = 0.0, device: str | None = None) -> None:
    """The engine exists, is installed and takes the settings given; nothing starts."""
    if engine not in ENGINES:
        raise OptionError(f"unknown engine {engine!r}{did_you_mean(engine, ENGINES)}; valid engines: {', '.join(ENGINES)}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise OptionError(f"workers={workers!r} should be a whole number >= 1")
    if engine != "ray":
        for name, value, default in (("ray_address", ray_address, None), ("gpus_per_worker", gpus_per_worker, 0)):
            if value not in (default, None):
                raise OptionError(f"{name}={value!r} applies to engine 'ray' only (engine={engine!r}); "
                                  "add --engine ray")
        return
    from .ray import check_ray

    check_ray(gpus_per_worker=gpus_per_worker, device=device)


def make_engine(engine: str = "local", *, workers: int = 1, ray_address: str | None = None,
                gpus_per_worker: float = 0.0) -> Engine:
    """An engine by name (no validation: `check_engine` first). Enter it to start it."""
    return ENGINES[engine](workers, ray_address, gpus_per_worker)
