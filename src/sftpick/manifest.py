"""What every manifest starts with: the version of sftpick and of the libraries the figures
depend on, when, and the command line. Imports nothing from the package but its version."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

from .version import __version__

LIBRARIES = ("torch", "transformers", "sentence-transformers", "numpy", "pyarrow", "faiss-cpu", "scikit-learn")


def manifest_header(run_id: str | None = None) -> dict:
    """sftpick's and the libraries' versions, the time and the command line (and the run id
    when there is one)."""
    return {"sftpick_version": __version__, **({"run_id": run_id} if run_id else {}),
            "versions": library_versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv}


def library_versions() -> dict[str, str | None]:
    """Python's and the numeric libraries' versions: what else the figures depend on."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {"python": sys.version.split()[0], **{name: installed(name) for name in LIBRARIES}}
