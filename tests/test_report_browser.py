"""The report in a real headless Chromium, driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: JSON messages on fds 3/4, so no driver or websocket package is
needed). Chromium comes from Debian (`make test` installs it where missing); without it the
test skips, except in CI (CI=true), where it fails."""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sftpick.report import build_report
from test_report import make_run

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--window-size=1280,1600"]


def chromium_binary() -> str:
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium, or run `make test`)")
    return found


class DevTools:
    """A minimal DevTools-protocol client over Chromium's pipe; events are kept in `events`."""

    def __init__(self, binary: str, profile: Path):
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            high_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next_id, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        return self._wait(lambda m: m.get("method") == method, timeout)

    def _wait(self, match, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.events:
                if match(message):
                    self.events.remove(message) if "id" in message else None
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
            *messages, self._buffer = self._buffer.split(b"\0")
            self.events += [json.loads(m) for m in messages]

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._write)
        os.close(self._read)


def open_page(browser: DevTools, url: str) -> str:
    """Attach to the first tab, enable console, log and network events, load `url`."""
    target = next(t for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
    session = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Page.navigate", {"url": url}, session=session)
    browser.wait_event("Page.loadEventFired")
    return session


def console_errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(json.dumps(params["args"])[:500])
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


def test_report_in_headless_chromium(tmp_path, real_records_path):
    binary = chromium_binary()
    report = build_report(make_run(tmp_path, real_records_path), examples=10)  # every record shown
    browser = DevTools(binary, tmp_path / "profile")
    try:
        session = open_page(browser, report.resolve().as_uri())
        time.sleep(1.0)  # let plotly finish drawing

        def evaluate(expression: str):
            return browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                session=session)["result"].get("value")

        assert evaluate("document.title").startswith("sftpick report")
        assert evaluate("document.querySelectorAll('.js-plotly-plot').length") == 2
        assert evaluate("document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 2
        assert evaluate("document.querySelectorAll('#counts tr').length") >= 4
        assert evaluate("typeof window.__pwned") == "undefined"  # the record's <script> did not run
        assert "<script>window.__pwned = 1</script>" in evaluate("document.body.innerText")
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot))
        assert console_errors(browser.events) == []
        requested = [e["params"]["request"]["url"] for e in browser.events
                     if e.get("method") == "Network.requestWillBeSent"]
        assert requested and all(url.startswith(("file:", "data:", "blob:")) for url in requested), requested
    finally:
        browser.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000
