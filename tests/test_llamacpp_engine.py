"""The embedded CPU engine (the default `llamacpp` backend) on the real embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


DEFAULTS = """
import json, os, sys
if len(sys.argv) > 1:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # this process may use one core only
from pipeline.llm import load_backend
from pipeline.recipe import parse_recipe
recipe = parse_recipe({"name": "d", "kind": "tinystories", "generate": {"count": 1}})  # no [backend] at all
e = load_backend(recipe.backend)
print(json.dumps({"cores": len(os.sched_getaffinity(0)), "threads": e.threads, "engines": e.engines,
                  "contexts": len(e._engines), "parallel": [c.parallel for c in e._engines],
                  "n_ctx": [c.n_ctx_seq for c in e._engines], "weights": e.weights_path.name,
                  "structured": e.structured_output, "model_id": e.model_id}))
"""


def _defaults(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", DEFAULTS, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_are_one_context_per_core_on_float16_weights() -> None:
    """A recipe that says nothing about the backend: every value below comes from the defaults."""
    d = _defaults()
    assert d["cores"] == len(os.sched_getaffinity(0))  # the cores this process may use
    assert d["threads"] == d["engines"] == d["contexts"] == d["cores"]  # one single-threaded context per core
    assert d["parallel"] == [16] * d["cores"] and d["n_ctx"] == [2048] * d["cores"]
    assert d["weights"].endswith(".f16.gguf") and d["structured"] is True
    assert d["model_id"].startswith("llamacpp/SmolLM2-135M-Instruct.Q4_1@")  # named for the weights as shipped
    # the count follows the cores the process may use, not the machine's
    one = _defaults("one-core")
    assert one["cores"] == 1 and one["threads"] == one["engines"] == one["contexts"] == 1


def test_explicit_threads_and_parallel_make_that_many_contexts_and_slots(engine) -> None:
    assert engine.threads == 2 and engine.engines == 2 and engine.parallel == 4
    assert [(e.parallel, e.n_ctx_seq) for e in engine._engines] == [(4, 1024)] * 2  # made, not only recorded
    single = LlamaCppEngine(n_threads=2, engines=1, parallel=3, n_ctx=512, weights="file")
    try:  # one context, which gets both threads; the shipped file as it is
        assert [(e.parallel, e.n_ctx_seq, e._threads) for e in single._engines] == [(3, 512, 2)]
        assert single.weights_path == single.path and not single.path.name.endswith(".f16.gguf")
    finally:
        single.close()


def test_more_samples_than_slots_each_reported_once_from_both_contexts(engine, monkeypatch) -> None:
    done: list[int] = []
    decoded_by: set[int] = set()  # the contexts that delivered a sample

    for e in engine._engines:  # tag each delivery with its context (on_done runs on whichever finishes last)
        def run(call, index, deliver, _run=e.run):
            def tagged(job, completion):
                decoded_by.add(index)
                deliver(job, completion)
            _run(call, index, tagged)
        monkeypatch.setattr(e, "run", run)

    out = engine.generate(reqs(9, n=2), on_done=lambda i, completions: done.append(i))
    assert sorted(done) == list(range(9)) and [len(c) for c in out] == [2] * 9
    assert decoded_by == {0, 1}  # the 18 samples were shared by both contexts
    for c in (c for cs in out for c in cs):
        # whatever was sampled (an end of turn as the first token included), each sample was decoded to its end
        assert 0 <= c.completion_tokens <= 24 and c.finish_reason in {"stop", "length"}
        assert c.finish_reason == "stop" or (c.completion_tokens == 24 and c.text)
        assert c.prompt_tokens > 100  # the whole prompt counts, shared prefix or not
    assert sum(c.completion_tokens for cs in out for c in cs) > 0


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
    # A bounded string: the grammar then admits no object longer than about 110 tokens, so with room for
    # 160 every sample ends with the object closed, whatever the model samples inside the grammar.
    schema = {"type": "object", "properties": {"animal": {"type": "string", "maxLength": 12},
                                               "legs": {"type": "integer"}},
              "required": ["animal", "legs"], "additionalProperties": False}
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=160, repeat_penalty=1.05)
    # The prompt does not ask for JSON: only the grammar can make the answer the object.
    requests = [ChatRequest((Message("user", f"Tell me about animal number {i}."),),
                            params, seed=i, n=2, json_schema=schema) for i in range(3)]
    engine = LlamaCppEngine(n_threads=2, parallel=2, n_ctx=512, structured_output=True)
    free = LlamaCppEngine(n_threads=2, parallel=2, n_ctx=512, weights="file", structured_output=False)
    try:
        # the schema becomes a grammar on every sample of the request, and only where structured output is on
        assert all(j.grammar and "animal" in j.grammar for j in engine._jobs(requests))
        assert all(j.grammar is None for j in free._jobs(requests))
        out = engine.generate(requests)
        unconstrained = free.generate(requests)  # same requests, schema ignored: the model's own format
    finally:
        free.close()
        engine.close()
    assert [c.finish_reason for cs in out for c in cs] == ["stop"] * 6
    for c in (c for cs in out for c in cs):
        obj = json.loads(c.text, strict=False)  # (a string may hold a raw control character)
        assert set(obj) == {"animal", "legs"} and isinstance(obj["animal"], str) and isinstance(obj["legs"], int)
        assert len(obj["animal"]) <= 12
    assert not all(_is_the_object(c.text) for cs in unconstrained for c in cs)  # the grammar is what made it JSON


def _is_the_object(text: str) -> bool:
    try:
        obj = json.loads(text, strict=False)
    except ValueError:
        return False
    return isinstance(obj, dict) and set(obj) == {"animal", "legs"}


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
