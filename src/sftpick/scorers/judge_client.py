"""Chat completions from any OpenAI-compatible server (vLLM, TGI, llama.cpp, `transformers
serve`, a hosted API), `concurrency` requests at a time, with retries.

- Transient failures are retried with exponential backoff (`backoff` · 2^attempt seconds,
  jittered to 50–100% so that parallel requests do not retry in step; at least what a
  `Retry-After` header asks, at most `MAX_WAIT_SECONDS`): HTTP 429 and 5xx, a timeout, a
  dropped or refused connection, a 2xx body that is not a chat completion. They are counted
  in `stats`. After `retries` retries of one request no new request starts, those running
  finish (their replies are handed over), and `JudgeUnavailable` is raised.
- HTTP 400, 413 and 422 are the record's own (too long for the judge, say): a `Reply` with
  `refused` set, which the scorer rejects with the server's words. Any other non-2xx answer
  (401, 403, 404, a redirect) is a setup problem no retry fixes: `JudgeRefused`.
- The API key is sent as `Authorization: Bearer …` and is replaced by `***` in every message
  this module builds, as is a password in the URL.
"""
from __future__ import annotations

import random
import re
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterator

from ..errors import JudgeRefused, JudgeUnavailable

MAX_WAIT_SECONDS = 300.0  # the longest pause between two tries, whatever Retry-After says
RECORD_STATUSES = (400, 413, 422)  # the request itself was refused: the record is rejected


@dataclass(frozen=True)
class Reply:
    text: str = ""  # the judge's message
    refused: str | None = None  # why the server refused this record's request (HTTP 400…)


class _Transient(Exception):
    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


class ChatClient:
    def __init__(self, url: str, model: str, *, key: str | None, sampling: dict, concurrency: int,
                 timeout: float, retries: int, backoff: float):
        import httpx

        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model, self.sampling = model, sampling
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self._key = key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=False,
                                  limits=httpx.Limits(max_connections=concurrency))
        self.stats: Counter = Counter()
        self._lock = threading.Lock()

    def replies(self, conversations: list[list[dict]]) -> Iterator[tuple[int, Reply]]:
        """(index, reply) for each conversation, as they finish; after the last reply that
        could be had, the first failure (JudgeUnavailable, JudgeRefused) is raised."""
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="judge")
        try:
            pending = {pool.submit(self._complete, messages, stop): i for i, messages in enumerate(conversations)}
            failure = None
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    reply, error = _outcome(future)
                    if error is not None:  # the worker has set `stop`: no new request starts
                        failure = failure or error
                    elif reply is not None:
                        yield index, reply
            if failure is not None:
                raise failure
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def redact(self, text: str) -> str:
        """`text` with the API key and any password in the URL replaced by ***."""
        if self._key:
            text = text.replace(self._key, "***")
        return _hide_password(text)

    # ------------------------------------------------------------------ one request
    def _complete(self, messages: list[dict], stop: threading.Event) -> Reply | None:
        """The reply, after retries; None when the run stopped before it was had."""
        for attempt in range(self.retries + 1):
            if stop.is_set():
                return None
            try:
                return self._attempt(messages)
            except JudgeRefused:
                stop.set()  # at once, before another worker takes the next record
                raise
            except _Transient as failure:
                self._count("transient_failures")
                if attempt == self.retries:
                    stop.set()
                    raise JudgeUnavailable(self.redact(
                        f"the judge at {self.endpoint} failed {attempt + 1} times for one record "
                        f"(last: {failure})")) from None
                self._count("retries")
                if stop.wait(self._delay(attempt, failure.retry_after)):
                    return None
        return None

    def _attempt(self, messages: list[dict]) -> Reply:
        import httpx

        body = {"model": self.model, "messages": messages, **self.sampling}
        self._count("requests")
        try:
            response = self._http.post(self.endpoint, json=body)
        except httpx.TimeoutException:
            raise _Transient(f"no answer within {self.timeout:g} s") from None
        except httpx.RequestError as error:  # refused, reset, closed mid-answer, a garbled body
            raise _Transient(f"connection failed: {type(error).__name__}: {error}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", retry_after(response.headers.get("retry-after")))
        if status in RECORD_STATUSES:
            return Reply(refused=self.redact(f"the judge refused the request (HTTP {status}): "
                                             f"{_snippet(response.text)}"))
        if not response.is_success:
            raise JudgeRefused(self.redact(
                f"the judge at {self.endpoint} answered HTTP {status} ({_hint(status)}): {_snippet(response.text)}"))
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient(f"HTTP {status} with a body that is not a chat completion: "
                             f"{_snippet(response.text)}") from None
        return Reply(text=content if isinstance(content, str) else "")

    def _delay(self, attempt: int, asked: float | None) -> float:
        wait_for = self.backoff * 2 ** attempt * random.uniform(0.5, 1.0)
        return min(max(wait_for, asked or 0.0), MAX_WAIT_SECONDS)

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1


def retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (a number or an HTTP date); None without one."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _outcome(future: Future) -> tuple[Reply | None, Exception | None]:
    try:
        return future.result(), None
    except (JudgeUnavailable, JudgeRefused) as error:
        return None, error


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def _hint(status: int) -> str:
    if status in (401, 403):
        return "check the key in the variable --judge-key-env names"
    if status == 404:
        return "--judge-url should be the OpenAI base URL (e.g. http://host:8000/v1) and --judge-model a model it serves"
    return "not a chat completion"


def _hide_password(text: str) -> str:
    return re.sub(r"(https?://[^/\s:@]+):[^/\s@]+@", r"\1:***@", text)
