"""The openai backend at batch sizes a GPU server sees: 20,000 requests to a real local server.

The server (tests/instant_server.py) answers each request with a story drawn
from the request's own prompt and seed, after a short delay so requests pile
up in flight. That makes every property checkable from outside the client:
each request was sent once, no more were in flight than the limit, and each
answer came back to the request that asked for it.
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.llm import ChatRequest, Message, SamplingParams, sample_seed
from pipeline.llm.openai_backend import AdaptiveLimit, OpenAIBackend
from pipeline.llm.config import OpenAIBackendConfig
from tests.instant_server import Storyteller, instant_server, server_stats

N, LIMIT = 20_000, 32


def test_twenty_thousand_requests_bounded_and_each_answered_once() -> None:
    params = SamplingParams(max_tokens=64)
    requests = [ChatRequest((Message("user", f'Words to use: "run", "ball", "red". Story number {i}.'),), params,
                            seed=i) for i in range(N)]
    done: list[int] = []
    with instant_server(delay_ms=2) as url:
        backend = OpenAIBackend(OpenAIBackendConfig(base_url=url, model="instant", max_concurrency=LIMIT))
        out = backend.generate(requests, on_done=lambda i, c: done.append(i))
        served = server_stats(url)
    assert served == {"answered": N, "distinct": N, "max_in_flight": served["max_in_flight"]}  # each sent once
    assert 1 < served["max_in_flight"] <= LIMIT and backend.max_active == LIMIT  # the bound held, and was used
    assert sorted(done) == list(range(N))  # each request reported once
    teller = Storyteller()
    for r, (c,) in zip(requests, out, strict=True):  # each answer is its own request's
        assert c.text == teller.reply(r.messages[-1].content, sample_seed(r.seed, 0))
    assert backend.stats()["retries"] == 0 and backend.requests == N


def test_a_release_wakes_one_waiter_not_all() -> None:
    async def run() -> list[int]:
        limit = AdaptiveLimit(1, 1, 1)
        await limit.acquire()
        waiters = [asyncio.ensure_future(limit.acquire()) for _ in range(1000)]
        await asyncio.sleep(0)
        queued = [len(limit._waiters)]
        for _ in range(3):
            limit.release("ok")
            await asyncio.sleep(0)
            queued.append(len(limit._waiters))
            assert sum(w.done() for w in waiters) == len(queued) - 1 and limit.active == 1
        waiters[-1].cancel()  # a cancelled waiter leaves the queue and takes no place
        await asyncio.sleep(0)
        queued.append(len(limit._waiters))
        for w in waiters[:-1]:
            if not w.done():
                limit.release("ok")
                await w
        limit.release("ok")
        return [*queued, limit.active]

    assert asyncio.run(run()) == [1000, 999, 998, 997, 996, 0]


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_both_transports_return_the_same_completions(transport: str) -> None:
    requests = [ChatRequest((Message("user", f'Words to use: "hop", "cup", "big". Story {i}.'),),
                            SamplingParams(max_tokens=64), seed=i, n=2) for i in range(20)]
    with instant_server() as url:
        out = OpenAIBackend(OpenAIBackendConfig(base_url=url, model="instant", transport=transport)).generate(requests)
    teller = Storyteller()
    assert [[c.text for c in cs] for cs in out] == [
        [teller.reply(r.messages[-1].content, sample_seed(r.seed, s)) for s in r.sample_indices] for r in requests]
    assert all(c.completion_tokens > 0 and c.finish_reason == "stop" for cs in out for c in cs)
