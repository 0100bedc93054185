"""sftpick: assess and select instruction-tuning data."""
__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "run", "score", "select"]


def __getattr__(name: str):
    """The API on first use: a Ray worker or a worker process that needs only the readers or
    one scorer does not import every selector and the training loop (seconds each time)."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sftpick' has no attribute {name!r}")
