"""sftpick: assess and select instruction-tuning data."""
from .version import __version__

__all__ = ["__version__", "evaluate", "run", "score", "select"]
# Where each lives (the module for `run` is not run.py: importing it would shadow the function).
_HOMES = {"score": "scoring", "select": "selection", "run": "pipeline", "evaluate": "train.api"}


def __getattr__(name: str):
    """The API on first use: a Ray worker or a worker process that needs only the readers or
    one scorer does not import every selector and the training loop (seconds each time)."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'sftpick' has no attribute {name!r}")
