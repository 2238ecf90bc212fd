"""The embedded CPU engine (the default `llamacpp` backend) on the real embedded model."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from pipeline.errors import UserError
from pipeline.llm import ChatRequest, Message, SamplingParams
from pipeline.llm.llamacpp_engine import LlamaCppEngine

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=24, repeat_penalty=1.1)
FEW_SHOT = "Here are examples. " + " ".join(f"Example {i}: the cat sat on mat number {i}." for i in range(30))


@pytest.fixture(scope="module")
def engine():
    e = LlamaCppEngine(n_threads=2, parallel=4, n_ctx=1024)  # two single-threaded contexts, 4 slots each
    yield e
    e.close()


def reqs(k: int, n: int = 1) -> list[ChatRequest]:
    return [ChatRequest((Message("user", f"{FEW_SHOT}\nNow name animal number {i}."),), PARAMS, seed=i, n=n)
            for i in range(k)]


def test_defaults_are_one_context_per_core_on_float16_weights(engine) -> None:
    assert engine.engines == 2 and engine.parallel == 4
    assert engine.weights_path.name.endswith(".f16.gguf")
    assert engine.model_id.startswith("llamacpp/SmolLM2-135M-Instruct.Q4_1@")  # named for the weights as shipped


def test_more_samples_than_slots_each_reported_once_from_both_contexts(engine) -> None:
    threads: set[str] = set()
    done: list[int] = []

    def on_done(i, completions):
        threads.add(threading.current_thread().name)
        done.append(i)

    out = engine.generate(reqs(9, n=2), on_done=on_done)
    assert sorted(done) == list(range(9)) and [len(c) for c in out] == [2] * 9
    assert len(threads) == 2  # the 18 samples were shared by both contexts
    for c in (c for cs in out for c in cs):
        assert c.text and 0 < c.completion_tokens <= 24 and c.finish_reason in {"stop", "length"}
        assert c.prompt_tokens > 100  # the whole prompt counts, shared prefix or not


def test_samples_are_seeded_whatever_the_context_slot_and_shared_prefix(engine) -> None:
    alone = [engine.generate([r])[0][0].text for r in reqs(3)]
    together = [c[0].text for c in engine.generate(reqs(3))]
    reversed_order = [c[0].text for c in engine.generate(reqs(3)[::-1])][::-1]
    # same sample, same seed: the same text, whether it ran alone, batched, or in another context and slot
    assert alone == together == reversed_order


def test_a_prompt_longer_than_the_context_is_a_user_error(engine) -> None:
    long = ChatRequest((Message("user", "word " * 1500),), PARAMS)
    with pytest.raises(UserError, match="backend.n_ctx"):
        engine.generate([long])


def test_json_schema_is_enforced_by_a_grammar() -> None:
    schema = {"type": "object", "properties": {"animal": {"type": "string"}, "legs": {"type": "integer"}},
              "required": ["animal", "legs"], "additionalProperties": False}
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=60, repeat_penalty=1.05)
    requests = [ChatRequest((Message("user", f"Describe animal number {i} as JSON with its name and legs."),),
                            params, seed=i, n=2, json_schema=schema) for i in range(3)]
    engine = LlamaCppEngine(n_threads=2, parallel=2, n_ctx=512, structured_output=True)
    try:
        out = engine.generate(requests)
        free = LlamaCppEngine(n_threads=2, parallel=2, n_ctx=512, weights="file", structured_output=False)
        unconstrained = free.generate(requests)  # same requests, schema ignored: the model's own format
        free.close()
    finally:
        engine.close()
    for c in (c for cs in out for c in cs if c.finish_reason == "stop"):
        obj = json.loads(c.text)
        assert set(obj) == {"animal", "legs"} and isinstance(obj["animal"], str) and isinstance(obj["legs"], int)
    assert sum(c.finish_reason == "stop" for cs in out for c in cs) >= 4
    assert any(_not_json(c.text) for cs in unconstrained for c in cs)  # the grammar is what made it JSON


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def test_a_batch_is_the_same_text_whatever_ran_before_it_and_under_load(engine) -> None:
    # Sampled, not greedy: a float-rounding difference in the logits shows up as another token.
    stories = [ChatRequest((Message("user", f"Write a short story about a {w}."),), PARAMS, seed=i)
               for i, w in enumerate(["cat", "dog", "frog", "bird", "fish", "bee", "cow", "owl", "fox", "hen"])]

    def texts(batch: list[ChatRequest]) -> list[str]:
        return [c[0].text for c in engine.generate(batch)]

    first = texts(stories)
    engine.generate(reqs(6))  # fills the slots with other prefixes a later call could have reused
    burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # timing changes, texts must not
    try:
        again = texts(stories)
    finally:
        burn.kill()
        burn.wait()
    assert again == first
