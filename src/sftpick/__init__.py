"""sftpick: assess and select instruction-tuning data."""
__version__ = "0.1.0"

from .api import evaluate, run, score, select  # noqa: E402

__all__ = ["__version__", "evaluate", "run", "score", "select"]
