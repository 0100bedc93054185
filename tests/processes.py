"""Kill a real sftpick process mid-run, for the tests that resume after SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable


def kill_when(command: list[str], ready: Callable[[], bool], *, what: str, within: float = 300,
              poll: float = 0.2, env: dict | None = None) -> None:
    """Run `command`; once `ready()` holds, SIGKILL it and wait for it to end. Fails with the
    process's stderr if it ends first, or naming `what` it waited for after `within` seconds."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + within
    while not ready():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, f"{what} did not happen in {within:g} s"
        time.sleep(poll)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
