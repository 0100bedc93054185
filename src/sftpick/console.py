"""The one way sftpick makes a rich console. Imports nothing from the package."""
from __future__ import annotations

from rich.console import Console, ConsoleDimensions

LOG_WIDTH = 1000  # wide enough that a table in a log never wraps; tables take only what they need


class _Console(Console):
    """On a terminal, rich's own width; anywhere else (a log, a pipe, a test's capture) a width
    that wraps nothing, decided when printing, so no output depends on `COLUMNS`."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(LOG_WIDTH, size.height)

    @size.setter
    def size(self, value: tuple[int, int]) -> None:
        Console.size.fset(self, value)


def make_console(stderr: bool = True) -> Console:
    """Paths and record text may hold "[": never markup. Messages never wrap, so a log keeps
    each on one line whatever the terminal's width."""
    return _Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)
