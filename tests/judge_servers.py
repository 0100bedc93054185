"""Real servers on loopback for the judge tests and benchmark: `transformers serve` with the
embedded SmolLM2-135M (its GGUF converted to a safetensors folder, served offline), and a
fault-injecting proxy in front of it that drops connections, stalls past the client's
timeout, answers 429 (with Retry-After) and 500, on a seeded schedule."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

FAULTS = ("drop", "delay", "429", "500")


def embedded_model_folder() -> Path:
    """The embedded SmolLM2-135M as a local safetensors folder (converted once, cached)."""
    from sftpick.models import DEFAULT_LM, _convert_gguf, resolve_lm_source

    return _convert_gguf(Path(resolve_lm_source(DEFAULT_LM)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def transformers_serve(model: Path, log: Path, *, threads: int | None = 1, extra: list[str] = (),
                       ready_within: float = 180.0) -> Iterator[str]:
    """`transformers serve MODEL` on 127.0.0.1 (offline, CPU, `threads` torch threads, None for
    torch's default: on a busy 2-core machine two threads ran generation 10x slower than one);
    yields its OpenAI base URL once it answers a chat request, and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_ready(base, str(model), process, log, ready_within)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base: str, model: str, process: subprocess.Popen, log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            warm = httpx.post(f"{base}/chat/completions", timeout=max(deadline - time.monotonic(), 1),
                              json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
            if warm.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"transformers serve did not answer within {within:g} s:\n{log.read_text()[-3000:]}")


def record_of(body: bytes) -> str:
    """Which record a chat request rates: a hash of its messages."""
    return hashlib.sha256(json.dumps(json.loads(body)["messages"]).encode()).hexdigest()[:16]


class FaultProxy:
    """An ASGI app that forwards chat requests to `upstream`, except where its schedule (seeded)
    says to inject a fault: the first requests get `first` (one of each kind by default), later
    ones a random kind with probability `rate` (never "delay", which costs a client timeout).
    `key`: requests without `Authorization: Bearer key` get 401. `refuse`: a request whose body
    holds this text gets HTTP 400 whose body echoes the Authorization header (a careless server).
    `down_after`: after that many forwards, every request gets 503."""

    def __init__(self, upstream: str, *, seed: int = 0, rate: float = 0.3, first: tuple[str, ...] = FAULTS,
                 delay: float = 5.0, key: str | None = None, refuse: str | None = None,
                 down_after: int | None = None):
        self.upstream, self.delay, self.key, self.refuse, self.down_after = upstream, delay, key, refuse, down_after
        rng = random.Random(seed)
        self.plan = list(first) + [rng.choice(("drop", "429", "500")) if rng.random() < rate else "ok"
                                   for _ in range(10_000)]
        self.requests = 0
        self.faults: Counter = Counter()  # kind -> injected
        self.forwarded: Counter = Counter()  # record -> forwards the server answered

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode()
        n, self.requests = self.requests, self.requests + 1
        if self.key is not None and auth != f"Bearer {self.key}":
            return await _answer(send, 401, {"error": f"invalid key in header {auth!r}"})
        if self.refuse is not None and self.refuse.encode() in body:
            return await _answer(send, 400, {"error": f"cannot rate this; you sent {auth!r}"})
        if self.down_after is not None and sum(self.forwarded.values()) >= self.down_after:
            self.faults["503"] += 1
            return await _answer(send, 503, {"error": "down"})
        fault = self.plan[n]
        if fault != "ok":
            self.faults[fault] += 1
        if fault == "429":
            return await _answer(send, 429, {"error": "slow down"}, [(b"retry-after", b"1")])
        if fault == "500":
            return await _answer(send, 500, {"error": "boom"})
        if fault == "delay":
            await asyncio.sleep(self.delay)  # the client has given up by now
        if fault in ("drop", "delay"):
            return await _drop(send)
        async with httpx.AsyncClient(timeout=300) as client:
            answer = await client.post(self.upstream + scope["path"].removeprefix("/v1"), content=body,
                                       headers={"content-type": "application/json"})
        self.forwarded[record_of(body)] += 1
        await send({"type": "http.response.start", "status": answer.status_code,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer.content})


async def _body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send, status: int, payload: dict, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *(headers or [])]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def _drop(send) -> None:
    """Promise 100 bytes, send 10, and stop: the server closes the connection mid-answer."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b'{"choices"', "more_body": True})
    raise ConnectionAbortedError("fault injected: connection dropped")


@contextmanager
def serving(app) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its base URL (…/v1)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
