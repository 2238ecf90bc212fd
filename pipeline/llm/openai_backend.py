"""The `openai` backend: any OpenAI-compatible chat endpoint, asynchronously, surviving faults.

* Each sample is one request, seeded with ``sample_seed(seed, i)``, so every
  sample is a cache entry of its own and a partial retry never duplicates one.
* Concurrency is bounded and adaptive (AIMD): a 429 halves the number of
  requests in flight, each success adds back a fraction of one.
* 429, 5xx, 408, timeouts, dropped connections and unparseable bodies are
  retried with exponential backoff and full jitter; a ``Retry-After`` header
  is honoured. Other 4xx (a bad request, a wrong key) fail at once.
* The API key is read from the environment variable the recipe names; it is
  never logged, stored in the cache, or written to a manifest.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import openai

from pipeline.errors import UserError
from pipeline.llm.types import ChatRequest, Completion, OnDone, sample_seed
from pipeline.recipe import OpenAIBackendConfig


class BackendFailed(RuntimeError):
    """A request that kept failing after every retry."""


class AdaptiveLimit:
    """A semaphore whose size follows the server: halve on 429, creep up on success."""

    def __init__(self, start: int, minimum: int, maximum: int):
        self.limit, self.minimum, self.maximum = float(start), minimum, maximum
        self.active = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < max(self.minimum, int(self.limit)))
            self.active += 1

    async def release(self, outcome: str) -> None:
        async with self._cond:
            self.active -= 1
            if outcome == "throttled":
                self.limit = max(float(self.minimum), self.limit * 0.5)
            elif outcome == "ok":
                self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
            self._cond.notify_all()


def retry_after_seconds(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIBackend:
    def __init__(self, config: OpenAIBackendConfig):
        self.config = config
        self._model_id = f"openai/{config.model}@{urlparse(config.base_url).netloc}"
        self.retries: Counter[str] = Counter()
        self.requests = 0

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
        async with openai.AsyncOpenAI(api_key=key, base_url=cfg.base_url, max_retries=0,
                                      timeout=cfg.timeout_s) as client:

            async def one(ri: int, sample: int) -> None:
                request = requests[ri]
                results[ri][sample - request.first_sample] = await self._sample(client, limit, request, sample)
                left[ri] -= 1
                if left[ri] == 0 and on_done:
                    on_done(ri, results[ri])  # type: ignore[arg-type]

            await asyncio.gather(*(one(ri, s) for ri, r in enumerate(requests) for s in r.sample_indices))
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
        extra: dict[str, Any] = {}
        if cfg.repeat_penalty_param:
            extra[cfg.repeat_penalty_param] = p.repeat_penalty
        if cfg.structured_output == "json_schema" and request.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "record", "schema": request.json_schema}}
        elif cfg.structured_output == "json_object" and request.json_schema is not None:
            body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        if extra:
            body["extra_body"] = extra
        return body

    async def _sample(self, client: openai.AsyncOpenAI, limit: AdaptiveLimit, request: ChatRequest,
                      sample: int) -> Completion:
        cfg = self.config
        body = self._body(request, sample)
        last = ""
        for attempt in range(cfg.max_retries + 1):
            await limit.acquire()
            outcome, delay = "failed", None
            try:
                self.requests += 1
                resp = await client.chat.completions.create(**body)
                choice = resp.choices[0]
                if choice.message is None or choice.message.content is None:
                    raise ValueError("a response without message content")
                usage = resp.usage
                outcome = "ok"
                return Completion(choice.message.content, choice.finish_reason or "stop",
                                  usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)
            except openai.RateLimitError as exc:
                outcome, kind, delay = "throttled", "rate_limited", retry_after_seconds(exc)
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    raise UserError(f"backend {self._model_id}: HTTP {exc.status_code} "
                                    f"({type(exc).__name__}); check the recipe's [backend] and ${cfg.api_key_env}") from None
                kind, delay = f"http_{exc.status_code}", retry_after_seconds(exc)
            except openai.APITimeoutError:
                kind = "timeout"
            except openai.APIConnectionError:
                kind = "connection"
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError):
                kind = "malformed_response"
            finally:
                await limit.release(outcome)
            self.retries[kind] += 1
            last = kind
            if attempt == cfg.max_retries:
                break
            backoff = min(cfg.max_backoff_s, cfg.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
            await asyncio.sleep(min(cfg.max_backoff_s, delay) if delay is not None else backoff)
        raise BackendFailed(f"backend {self._model_id}: a request failed {cfg.max_retries + 1} times (last: {last})")
