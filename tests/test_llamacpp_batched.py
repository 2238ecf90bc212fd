"""The batched CPU engine (backend.parallel > 1) on the real embedded model."""

from __future__ import annotations

import pytest

from pipeline.llm import ChatRequest, Message, SamplingParams
from pipeline.llm.llamacpp_batched import BatchedLlamaCppBackend

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, repeat_penalty=1.1)
FEW_SHOT = "Here are examples. " + " ".join(f"Example {i}: the cat sat on mat number {i}." for i in range(30))


@pytest.fixture(scope="module")
def engine():
    e = BatchedLlamaCppBackend(n_threads=2, parallel=4)
    yield e
    e.close()


def reqs(k: int, n: int = 1) -> list[ChatRequest]:
    return [ChatRequest((Message("user", f"{FEW_SHOT}\nNow name animal number {i}."),), PARAMS, seed=i, n=n)
            for i in range(k)]


def test_more_samples_than_slots_each_reported_once(engine) -> None:
    done: list[int] = []
    out = engine.generate(reqs(5, n=2), on_done=lambda i, c: done.append(i))
    assert sorted(done) == list(range(5)) and [len(c) for c in out] == [2] * 5
    for c in (c for cs in out for c in cs):
        assert c.text and 0 < c.completion_tokens <= 24 and c.finish_reason in {"stop", "length"}
        assert c.prompt_tokens > 100  # the whole prompt counts, shared prefix or not


def test_samples_are_seeded_whatever_the_slot_and_the_shared_prefix(engine) -> None:
    alone = [engine.generate([r])[0][0].text for r in reqs(3)]
    together = [c[0].text for c in engine.generate(reqs(3))]
    reversed_order = [c[0].text for c in engine.generate(reqs(3)[::-1])][::-1]
    # same sample, same seed: the same story, whether it ran alone, batched, or on another slot
    assert alone == together == reversed_order
