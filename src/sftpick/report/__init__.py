"""The run report: one self-contained HTML page per run folder (build.py), its figures
(figures.py) and the HTML every sftpick page shares (html.py, also used by `sftpick eval`)."""
from .build import build_report, collapse_warnings

__all__ = ["build_report", "collapse_warnings"]
