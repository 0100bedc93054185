"""What a failed sftpick command printed: exactly one line, `error: …`, whatever the terminal's
width or the length of the paths in it (a wrapped or boxed error fails here)."""
from __future__ import annotations


def one_line_error(output: str) -> str:
    """The message of the one `error:` line that is the whole of `output`."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0].removeprefix("error: ")
