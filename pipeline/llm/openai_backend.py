"""The `openai` backend: any OpenAI-compatible chat endpoint, asynchronously, surviving faults.

* Each sample is one request, seeded with ``sample_seed(seed, i)``, so every
  sample is a cache entry of its own and a partial retry never duplicates one.
* Concurrency is bounded and adaptive (AIMD): a 429 halves the number of
  requests in flight, each success adds back a fraction of one. A fixed pool
  of ``max_concurrency`` workers takes the samples in order, so a batch of a
  million costs what a batch of a thousand does per request.
* 429, 5xx, 408, timeouts, dropped connections and unparseable bodies are
  retried with exponential backoff and full jitter; a ``Retry-After`` header
  is honoured. Other 4xx (a bad request, a wrong key) fail at once.
* The API key is read from the environment variable the recipe names; it is
  never logged, stored in the cache, or written to a manifest.

Two transports speak the same chat-completions protocol. ``aiohttp`` (the
default) posts the JSON body itself: about 0.2 ms of CPU per request against
a local server, where the ``openai`` SDK (``transport = "sdk"``) spends about
2-3 ms building and validating its typed objects (``benchmarks/pipeline.py``
measures both). Against a GPU server answering hundreds of requests a second,
that difference is whether the client keeps up.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

import aiohttp
import orjson

from pipeline.errors import UserError
from pipeline.llm.types import ChatRequest, Completion, OnDone, sample_seed
from pipeline.llm.config import OpenAIBackendConfig


class BackendFailed(RuntimeError):
    """A request that kept failing after every retry."""


@dataclass
class Attempt(Exception):
    """Why one attempt failed: ``kind`` names it in the retry counts; ``delay`` is the server's Retry-After."""

    kind: str
    delay: float | None = None
    throttled: bool = False


class AdaptiveLimit:
    """A semaphore whose size follows the server: halve on 429, creep up on success.

    Admitting and releasing a request are O(1) whatever the number waiting: waiters queue in order and a
    release wakes only as many as there are free places (a condition's ``notify_all`` would wake every
    one of them to re-check, which made large batches quadratic).
    """

    def __init__(self, start: int, minimum: int, maximum: int):
        self.limit, self.minimum, self.maximum = float(start), minimum, maximum
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return max(self.minimum, int(self.limit))

    async def acquire(self) -> None:
        if self.active < self.size and not self._waiters:
            self.active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the release that woke us counted us as active already
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release("failed")  # woken and cancelled in the same step: hand the place on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, outcome: str) -> None:
        self.active -= 1
        if outcome == "throttled":
            self.limit = max(float(self.minimum), self.limit * 0.5)
        elif outcome == "ok":
            self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
        while self._waiters and self.active < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)


MAX_REPLY_BYTES = 16 << 20  # a reply, decompressed: a completion is kilobytes; a gzip bomb is gigabytes
MAX_TOKEN_COUNT = 1 << 31  # a usage count past this is not a count


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's delay in seconds (a number, or an HTTP date); None when absent or
    unreadable (``soon``): the backoff then decides."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        seconds = parsed.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def _bounded(chunks: AsyncIterator[bytes], declared: int | None) -> bytes:
    """A reply body read chunk by chunk (decompressed as it comes), at most MAX_REPLY_BYTES of it."""
    if declared is not None and declared > MAX_REPLY_BYTES:
        raise Attempt("oversized_response")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise Attempt("oversized_response")
    return bytes(body)


class Transport(Protocol):
    """Posts one chat-completions body; returns the parsed reply or raises :class:`Attempt` (retryable)
    or :class:`UserError` (a client error: retrying cannot help)."""

    async def post(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def _status_failure(status: int, retry_after: str | None, where: str, key_env: str) -> Exception:
    if status == 429:
        return Attempt("rate_limited", retry_after_seconds(retry_after), throttled=True)
    if status >= 500 or status in (408, 409):
        return Attempt(f"http_{status}", retry_after_seconds(retry_after))
    return UserError(f"backend {where}: HTTP {status}; check the recipe's [backend] and ${key_env}")


class AiohttpTransport:
    def __init__(self, config: OpenAIBackendConfig, key: str, where: str):
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._where, self._key_env = where, config.api_key_env
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=config.max_concurrency),
            timeout=aiohttp.ClientTimeout(total=config.timeout_s))

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(self._url, data=orjson.dumps(body), headers=self._headers) as resp:
                if resp.status != 200:
                    raise _status_failure(resp.status, resp.headers.get("Retry-After"), self._where, self._key_env)
                raw = await _bounded(resp.content.iter_chunked(1 << 16), None)
        except TimeoutError:
            raise Attempt("timeout") from None
        except aiohttp.ClientPayloadError:
            raise Attempt("malformed_response") from None
        except aiohttp.ClientError:
            raise Attempt("connection") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Attempt("malformed_response") from None

    async def close(self) -> None:
        await self._session.close()


_SDK_FIELDS = frozenset({"model", "messages", "temperature", "top_p", "max_tokens", "seed", "stop", "response_format"})


class SdkTransport:
    """The ``openai`` package's client: for endpoints where its own handling matters more than CPU."""

    def __init__(self, config: OpenAIBackendConfig, key: str, where: str):
        import openai

        self._openai, self._where, self._key_env = openai, where, config.api_key_env
        self._client = openai.AsyncOpenAI(api_key=key, base_url=config.base_url, max_retries=0,
                                          timeout=config.timeout_s)

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        openai = self._openai
        try:
            known = {k: v for k, v in body.items() if k in _SDK_FIELDS}
            extra = {k: v for k, v in body.items() if k not in _SDK_FIELDS}  # server extensions
            async with self._client.chat.completions.with_streaming_response.create(
                    **known, extra_body=extra or None) as resp:
                return orjson.loads(await _bounded(resp.iter_bytes(), None))
        except openai.APIStatusError as exc:
            raise _status_failure(exc.status_code, exc.response.headers.get("retry-after"), self._where,
                                  self._key_env) from None
        except openai.APITimeoutError:
            raise Attempt("timeout") from None
        except openai.APIConnectionError:
            raise Attempt("connection") from None
        except orjson.JSONDecodeError:
            raise Attempt("malformed_response") from None

    async def close(self) -> None:
        await self._client.close()


def _count(value: object) -> int | None:
    """A usage count: a whole number from 0 to MAX_TOKEN_COUNT (absent: 0), else None."""
    if value is None:
        return 0
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else None


def completion(reply: object) -> Completion:
    """The first choice of a chat-completions reply, checked field by field before anything may cache
    it; :class:`Attempt` (retried) when the body is not one: no text, a finish reason that is not a
    short string, a usage count that is negative, fractional or absurd."""
    try:
        choice = reply["choices"][0]  # type: ignore[index]
        text = choice["message"]["content"]
        finish = choice.get("finish_reason") or "stop"
        usage = reply.get("usage") or {}  # type: ignore[union-attr]
        tokens = (_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
    except (KeyError, IndexError, TypeError, AttributeError):
        raise Attempt("malformed_response") from None
    if not isinstance(text, str) or not isinstance(finish, str) or len(finish) > 64 or None in tokens:
        raise Attempt("invalid_response")
    return Completion(text, finish, tokens[0], tokens[1])  # type: ignore[arg-type]


TRANSPORTS = {"aiohttp": AiohttpTransport, "sdk": SdkTransport}


class OpenAIBackend:
    def __init__(self, config: OpenAIBackendConfig):
        self.config = config
        self._model_id = f"openai/{config.model}@{urlparse(config.base_url).netloc}"
        self.retries: Counter[str] = Counter()
        self.requests = 0
        self.max_active = 0  # the most requests in flight at once, over this backend's life

    @property
    def model_id(self) -> str:
        return self._model_id

    def stats(self) -> dict[str, Any]:
        return {"retries": sum(self.retries.values()), "retries_by_kind": dict(self.retries),
                "http_requests": self.requests}

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        coro = self._run(requests, on_done)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        # Called from inside an event loop (an async flow): run ours on a thread of its own.
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.setdefault("r", asyncio.run(coro)))
        thread.start()
        thread.join()
        return box["r"]

    async def _run(self, requests: Sequence[ChatRequest], on_done: OnDone | None) -> list[list[Completion]]:
        cfg = self.config
        key = os.environ.get(cfg.api_key_env) or "not-needed"  # local servers take any key
        limit = AdaptiveLimit(cfg.max_concurrency, cfg.min_concurrency, cfg.max_concurrency)
        results: list[list[Completion | None]] = [[None] * r.n for r in requests]
        left = [r.n for r in requests]
        samples: Iterator[tuple[int, int]] = ((ri, s) for ri, r in enumerate(requests) for s in r.sample_indices)
        transport = TRANSPORTS[cfg.transport](cfg, key, self._model_id)

        async def worker() -> None:
            for ri, sample in samples:  # one shared iterator: each sample goes to exactly one worker
                request = requests[ri]
                results[ri][sample - request.first_sample] = await self._sample(transport, limit, request, sample)
                left[ri] -= 1
                if left[ri] == 0 and on_done:
                    on_done(ri, results[ri])  # type: ignore[arg-type]

        total = sum(left)
        try:
            workers = [asyncio.ensure_future(worker()) for _ in range(min(cfg.max_concurrency, total))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        finally:
            await transport.close()
        return results  # type: ignore[return-value]

    def _body(self, request: ChatRequest, sample: int) -> dict[str, Any]:
        p, cfg = request.params, self.config
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens,
            "seed": sample_seed(request.seed, sample),
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if cfg.repeat_penalty_param:  # a server extension: a top-level field of the body
            body[cfg.repeat_penalty_param] = p.repeat_penalty
        if cfg.structured_output == "json_schema" and request.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "record", "schema": request.json_schema}}
        elif cfg.structured_output == "json_object" and request.json_schema is not None:
            body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        return body

    async def _sample(self, transport: Transport, limit: AdaptiveLimit, request: ChatRequest,
                      sample: int) -> Completion:
        cfg = self.config
        body = self._body(request, sample)
        last = ""
        for attempt in range(cfg.max_retries + 1):
            await limit.acquire()
            self.max_active = max(self.max_active, limit.active)
            outcome = "failed"
            try:
                self.requests += 1
                result = completion(await transport.post(body))
                outcome = "ok"
                return result
            except Attempt as failure:
                outcome = "throttled" if failure.throttled else "failed"
                kind, delay = failure.kind, failure.delay
            finally:
                limit.release(outcome)
            self.retries[kind] += 1
            last = kind
            if attempt == cfg.max_retries:
                break
            backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
            await asyncio.sleep(min(cfg.max_backoff_s, delay) if delay is not None else backoff)
        raise BackendFailed(f"backend {self._model_id}: a request failed {cfg.max_retries + 1} times (last: {last})")
