"""Errors a user can cause and mend, and the hint that names the closest valid choice.
Imports nothing from the package."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """` (did you mean budget?)` when a choice is close to `name`, else ``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]}?)" if close else ""
