"""Real servers for tests, on 127.0.0.1 only.

* ``llama_server()``: llama-cpp-python's OpenAI-compatible server
  (``python -m llama_cpp.server``) serving the embedded SmolLM2-135M model.
* ``FaultProxy``: a small HTTP proxy between a client and that server that
  answers a planned share of requests with a 429 (with Retry-After), a 500,
  a hang past the client's timeout, a cut connection, or malformed JSON, and
  forwards the rest untouched.
* ``ScriptedServer``: an OpenAI-compatible endpoint whose replies the test
  writes (hostile usage counts, odd headers, a gzip bomb).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Self

import httpx

from pipeline.llm.llamacpp import resolve_model_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(n_threads: int = 2, startup_s: float = 120.0) -> Iterator[str]:
    """Start the server, yield its base URL (``http://127.0.0.1:PORT/v1``), stop it."""
    port = free_port()
    with serving([sys.executable, "-m", "llama_cpp.server", "--model",
                  str(resolve_model_path("smollm2-135m-instruct")), "--model_alias", "smollm2", "--host",
                  "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(n_threads), "--verbose",
                  "False"], f"http://127.0.0.1:{port}/v1", "llama_cpp.server", startup_s) as url:
        yield url


@contextlib.contextmanager
def serving(command: list[str], url: str, name: str, startup_s: float, cwd: str | None = None) -> Iterator[str]:
    """Run a server process until ``url``/models answers, yield ``url``, stop the process."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start in time") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# Which fault request k of the proxy's life gets: a fixed plan, so runs are reproducible.
PLAN = {1: "429", 4: "500", 6: "hang", 9: "cut", 12: "malformed", 15: "429", 17: "500", 20: "malformed"}


class _ServerThread:
    """An asyncio server on 127.0.0.1, in a thread of its own, for the length of a ``with`` block;
    a subclass answers connections in ``_handle``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class FaultProxy(_ServerThread):
    """HTTP/1.1 proxy on 127.0.0.1 injecting faults by plan; counts what it did."""

    def __init__(self, upstream: str, plan: dict[int, str] | None = None, hang_s: float = 8.0, every: int = 24):
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.plan, self.hang_s, self.every = plan or PLAN, hang_s, every
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self._count = 0

    async def _start(self) -> None:
        self._client = httpx.AsyncClient(timeout=300)
        await super()._start()

    async def _stop(self) -> None:
        self._server.close()
        for task in asyncio.all_tasks():  # hung handlers still asleep
            if task is not asyncio.current_task():
                task.cancel()
        await self._client.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one connection may carry many requests
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
                body = await reader.readexactly(length) if length else b""
                self._count += 1
                fault = self.plan.get(self._count % self.every) if path.endswith("/chat/completions") else None
                if fault:
                    self.injected[fault] += 1
                if fault == "cut":
                    writer.transport.abort()
                    return
                if fault == "hang":
                    await asyncio.sleep(self.hang_s)
                    writer.transport.abort()
                    return
                if fault == "429":
                    await self._reply(writer, 429, b'{"error": {"message": "slow down"}}', {"Retry-After": "1"})
                    continue
                if fault == "500":
                    await self._reply(writer, 500, b'{"error": {"message": "boom"}}')
                    continue
                if fault == "malformed":
                    await self._reply(writer, 200, b'{"id": "x", "choices": [{"message": ')
                    continue
                url = self.upstream.removesuffix("/v1") + path
                fwd = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
                resp = await self._client.request(method, url, content=body, headers=fwd)
                self.forwarded += 1
                await self._reply(writer, resp.status_code, resp.content,
                                  {"Content-Type": resp.headers.get("content-type", "application/json")})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str] | None = None,
                     ) -> None:
        fields = {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body)),
                  "Connection": "keep-alive"}
        head = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in fields.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()


Answer = tuple[int, dict[str, str], bytes]


class ScriptedServer(_ServerThread):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 whose replies a test writes: ``answer(body, k)``
    gets each request's JSON body and how many requests with the same messages came before it, and
    returns (status, headers, body bytes). It speaks real HTTP/1.1 (keep-alive, Content-Length), so
    the client's own transport, decompression and parsing run as against any server."""

    def __init__(self, answer: Callable[[dict[str, Any], int], Answer]):
        super().__init__()
        self.answer = answer
        self.requests: Counter[str] = Counter()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
                body = json.loads(await reader.readexactly(length)) if length else {}
                key = json.dumps(body.get("messages"), sort_keys=True)
                status, extra, payload = self.answer(body, self.requests[key])
                self.requests[key] += 1
                await FaultProxy._reply(writer, status, payload, extra)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def chat_reply(text: str = "A story.", finish: object = "stop", prompt_tokens: object = 5,
               completion_tokens: object = 3) -> bytes:
    """A chat-completions body with these fields as they are (any JSON value, for hostile replies)."""
    return json.dumps({"id": "x", "object": "chat.completion", "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": finish}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}).encode()
