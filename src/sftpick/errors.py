"""Errors a user can cause and mend. Every one derives from `SftpickError`: the CLI prints it
as one line with exit code 2; any other exception is a bug and says so (exit code 3).

Each kind also derives from the builtin it replaced (ValueError, RuntimeError, …), so code
that caught those still does. Imports nothing from the package."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class SftpickError(Exception):
    """A mistake in the options, the data or the environment that the user can mend."""


class OptionError(SftpickError, ValueError):
    """An option's value is invalid, unknown, or conflicts with another option."""


class DataError(SftpickError, ValueError):
    """The data cannot be used as asked (no record left to select, a file that does not fit)."""


class InvalidRecord(DataError):
    """A record that cannot become an Example; the message is the reason kept in rejects."""


class UnknownFormat(DataError):
    """A file whose records match none of the known formats."""


class DataMismatch(DataError):
    """The data file is not the one the scores were computed from."""


class IncompleteRun(DataError):
    """A run folder whose files are not the ones its manifest vouches for."""


class OverlapError(DataError):
    """An eval record is also a training record of an arm."""


class UnreadableInput(SftpickError, RuntimeError):
    """The file as a whole cannot be read (missing, wrong extension, broken JSON array)."""


class ModelNotFoundError(SftpickError, RuntimeError):
    """The model name is neither an embedded default, a local path nor a cached hub id."""


class OutputLocked(SftpickError, RuntimeError):
    """Another process is writing the same output."""


class EngineError(SftpickError, RuntimeError):
    """The engine cannot run the work: a cluster without the resources asked for, or no progress."""


class JudgeUnavailable(SftpickError, ConnectionError):
    """Retries are exhausted: the run stops (the ratings finished so far are kept)."""


class JudgeRefused(SftpickError, ValueError):
    """The server refuses every request (bad key, wrong URL or model): no retry can help."""


class MissingDependency(OptionError):
    """An option asks for a feature whose package is not installed (`--engine ray`, the judge);
    the message names the `pip install` to run."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """` (did you mean budget?)` when a choice is close to `name`, else ``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def not_one_of(name: str, value: object, choices: Iterable[object], owner: str = "") -> OptionError:
    """`variant='x' is not one of superfiltering, cherry (did you mean …?)`, as an OptionError."""
    choices = [str(c) for c in choices]
    where = f"{owner}: " if owner else ""
    return OptionError(f"{where}{name}={value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")
