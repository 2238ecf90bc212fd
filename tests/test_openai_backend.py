"""The openai backend against real OpenAI-compatible servers on 127.0.0.1, with and without faults.

What the model's server does (usage, seeds, grammars, its errors) is tested against llama.cpp's server with
the embedded model. Faults are injected by a proxy in front of the instant server (tests/instant_server.py):
what is tested there is the client's retrying, which needs answers, not a model's, and gets them at once.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline.errors import UserError
from pipeline.llm import CachedBackend, ChatRequest, Message, ResponseCache, SamplingParams
from pipeline.llm.openai_backend import AdaptiveLimit, BackendFailed, OpenAIBackend
from pipeline.llm.config import OpenAIBackendConfig
from pipeline.structured import object_schema
from tests.servers import FaultProxy, llama_server

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=16, repeat_penalty=1.1)


@pytest.fixture(scope="module")
def server_url():
    with llama_server() as url:
        yield url


def config(url: str, **kw) -> OpenAIBackendConfig:
    return OpenAIBackendConfig(base_url=url, model="smollm2", repeat_penalty_param="repeat_penalty",
                               **{"max_concurrency": 4, "timeout_s": 4.0, "backoff_s": 0.05, **kw})


def requests(k: int, n: int = 1) -> list[ChatRequest]:
    """Prompts of different lengths, so prompt_tokens tells which request a completion answered."""
    return [ChatRequest((Message("user", "Name an animal." + " Please." * i),), PARAMS, seed=100 + i, n=n)
            for i in range(k)]


def test_real_server_completions_with_usage_and_seeds(server_url: str) -> None:
    backend = OpenAIBackend(config(server_url, timeout_s=60.0))  # the first request also warms the server up
    first = backend.generate(requests(3, n=2))
    assert [len(c) for c in first] == [2, 2, 2]
    for c in (c for cs in first for c in cs):
        # (any text the model may sample, an immediate end of turn included)
        assert 0 <= c.completion_tokens <= 16 and c.prompt_tokens > 5 and c.finish_reason in {"stop", "length"}
        assert c.finish_reason == "stop" or (c.completion_tokens == 16 and c.text)
    assert sum(c.completion_tokens for cs in first for c in cs) > 0
    assert len({c.prompt_tokens for cs in first for c in cs}) == 3  # one prompt length per request
    # (llama_cpp.server reuses cached prompt prefixes, which can change a sampled token,
    # so equal seeds do not guarantee equal texts across requests; the seed we send is checked below)
    assert backend.stats()["retries"] == 0
    assert backend.model_id == f"openai/smollm2@{server_url.split('/')[2]}"


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_faults_are_retried_and_nothing_is_lost_or_duplicated(instant_url: str, transport: str) -> None:
    direct = OpenAIBackend(config(instant_url, timeout_s=60.0)).generate(requests(12))
    with FaultProxy(instant_url) as proxy:
        backend = OpenAIBackend(config(proxy.url, transport=transport))
        done: list[int] = []
        through = backend.generate(requests(12), on_done=lambda i, c: done.append(i))
    assert sorted(done) == list(range(12))  # each request reported exactly once
    # every answer belongs to its own request, none missing, none twice
    assert [[c.prompt_tokens for c in cs] for cs in through] == [[c.prompt_tokens for c in cs] for cs in direct]
    assert all(len(cs) == 1 and cs[0].finish_reason in {"stop", "length"} for cs in through)
    assert {"429", "500", "hang", "cut", "malformed"} <= set(proxy.injected)
    stats = backend.stats()["retries_by_kind"]
    # every injected fault was retried; a 429 is the server's word, so exactly those; a slow reply on a busy
    # machine may time out besides the planned hangs, so those at least (the answers above are exact anyway)
    assert stats["rate_limited"] == proxy.injected["429"] and stats["http_500"] == proxy.injected["500"]
    assert stats["timeout"] >= proxy.injected["hang"]
    # a cut connection shows as a dropped connection or a cut-off body, depending on when it falls
    assert stats.get("malformed_response", 0) + stats.get("connection", 0) >= \
        proxy.injected["malformed"] + proxy.injected["cut"]


def test_cache_counts_retries_and_serves_the_rest(instant_url: str, tmp_path) -> None:
    with FaultProxy(instant_url) as proxy:
        cached = CachedBackend(OpenAIBackend(config(proxy.url)), ResponseCache(tmp_path / "c.sqlite"))
        cached.generate(requests(8))
        assert cached.stats.retries == sum(proxy.injected.values()) > 0
        assert cached.stats.misses == 8
        cached.generate(requests(8))
        assert cached.stats.hits == 8 and cached.stats.misses == 8


def test_each_sample_is_sent_with_its_own_seed() -> None:
    from pipeline.llm import sample_seed

    backend = OpenAIBackend(config("http://127.0.0.1:9/v1"))
    req = requests(1, n=3)[0]
    bodies = [backend._body(req, i) for i in req.sample_indices]
    assert [b["seed"] for b in bodies] == [sample_seed(req.seed, i) for i in range(3)]
    assert bodies[0]["repeat_penalty"] == 1.1 and bodies[0]["max_tokens"] == 16
    assert "response_format" not in bodies[0]


def test_a_json_schema_is_sent_in_the_configured_dialect() -> None:
    schema = object_schema(animal={"type": "string"})
    req = ChatRequest((Message("user", "Name an animal."),), PARAMS, json_schema=schema)
    body = lambda dialect: OpenAIBackend(config("http://127.0.0.1:9/v1", structured_output=dialect))._body(req, 0)  # noqa: E731
    assert body("json_schema")["response_format"] == {"type": "json_schema",
                                                      "json_schema": {"name": "record", "schema": schema}}
    assert body("json_object")["response_format"] == {"type": "json_object", "schema": schema}
    assert "response_format" not in body("none")
    plain = ChatRequest((Message("user", "Name an animal."),), PARAMS)  # no schema: nothing to enforce
    assert "response_format" not in OpenAIBackend(config("http://x/v1", structured_output="json_schema"))._body(plain, 0)


def test_structured_output_through_the_real_server(server_url: str) -> None:
    # A bounded string: the grammar then admits no object longer than about 110 tokens, so with room for
    # 160 every answer ends, whatever the model samples inside the grammar.
    schema = object_schema(animal={"type": "string", "maxLength": 12}, legs={"type": "integer"})
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=160, repeat_penalty=1.05)
    # The prompt does not ask for JSON: only the grammar can make the answer the object.
    reqs = [ChatRequest((Message("user", f"Tell me about animal number {i}."),), params, seed=i, json_schema=schema)
            for i in range(4)]
    out = OpenAIBackend(config(server_url, timeout_s=60.0, structured_output="json_object")).generate(reqs)
    assert [c.finish_reason for cs in out for c in cs] == ["stop"] * 4
    for c in (c for cs in out for c in cs):  # the server turned the schema into a grammar: every answer is the object
        obj = json.loads(c.text, strict=False)  # (a string may hold a raw control character)
        assert set(obj) == {"animal", "legs"} and isinstance(obj["legs"], int) and len(obj["animal"]) <= 12


def test_client_errors_fail_at_once_with_one_line(server_url: str) -> None:
    backend = OpenAIBackend(config(server_url.replace("/v1", "/nowhere")))
    with pytest.raises(UserError, match="HTTP 404"):
        backend.generate(requests(1))
    assert backend.stats()["retries"] == 0


def test_adaptive_limit_halves_on_rate_limits_and_recovers() -> None:
    async def run() -> list[float]:
        limit = AdaptiveLimit(16, 1, 16)
        seen = []
        for outcome in ["throttled", "throttled", "throttled"] + ["ok"] * 40:
            await limit.acquire()
            limit.release(outcome)
            seen.append(limit.limit)
        return seen

    seen = asyncio.run(run())
    assert seen[:3] == [8.0, 4.0, 2.0]
    assert 8 < seen[-1] <= 16  # additive increase after the storm


def test_a_build_through_the_faulty_proxy_completes(prefect_server: str, instant_url: str, tmp_path) -> None:
    """The demo-style recipe with only the [backend] section changed, against faults."""
    import polars as pl

    from flows.build import flow_for


    tinystories_flow = flow_for("tinystories")
    from pipeline.shards import read_split, verify_dataset
    from tests.conftest import instant_recipe, recipe_seed
    from tests.replay import preload_stories

    with FaultProxy(instant_url) as proxy:
        recipe = instant_recipe(tmp_path / "remote.toml", proxy.url, name="remote", out=tmp_path / "out", count=10,
                                batch_size=5, seed=recipe_seed(5), summaries=0.3, backend=(
                                    "max_concurrency = 2\n"
                                    "timeout_s = 4.0  # the instant server answers at once: only injected hangs time out\n"
                                    "backoff_s = 0.05"))
        # Stories 0 and 7 come from the cache (keyed by this server's model id); the other eight go through
        # the proxy and its faults.
        model_id = f"openai/instant@127.0.0.1:{proxy.port}"
        preload_stories(recipe, [0, 7], model_id=model_id)
        result = tinystories_flow(recipe_path=str(recipe))
    ds = verify_dataset(result["dataset"])
    generated = pl.read_parquet(tmp_path / "out" / "remote" / "stages" / "generate" / "records.parquet")
    rejected = pl.read_parquet(tmp_path / "out" / "remote" / "stages" / "generate" / "rejected.parquet")
    # every story index exactly once: nothing lost, nothing duplicated
    assert sorted(generated["index"].to_list() + [__import__("json").loads(r)["index"]
                                                  for r in rejected["record_json"]]) == list(range(10))
    assert ds.manifest["models"] == [model_id]
    summaries = sum(r["summary"] is not None for r in generated.iter_rows(named=True))
    assert ds.manifest["usage"]["cache_hits"] == 2 and ds.manifest["usage"]["model_calls"] == 8 + summaries
    # every injected fault cost a retry (a slow, serial server may add genuine timeouts on top)
    assert ds.manifest["usage"]["retries"] >= sum(proxy.injected.values()) > 0
    assert "| retries |" in (ds.path / "report.md").read_text()
    assert read_split(ds.path, "train").height == 10 and rejected.height == 0  # the instant stories all pass


@pytest.mark.parametrize(("fault", "kind"), [("500", "http_500"), ("429", "rate_limited")])
def test_a_request_out_of_retries_names_its_last_fault(instant_url: str, fault: str, kind: str) -> None:
    with FaultProxy(instant_url, plan={k: fault for k in range(10_000)}, every=10**9) as proxy:
        backend = OpenAIBackend(config(proxy.url, max_retries=2, max_concurrency=1, max_backoff_s=0.1))
        with pytest.raises(BackendFailed, match=rf"a request failed 3 times \(last: {kind}\)$"):
            backend.generate(requests(1))
    assert proxy.injected[fault] == 3 and proxy.forwarded == 0  # the first try and 2 retries, nothing else


def test_a_backend_out_of_retries_fails_the_build_and_keeps_what_was_generated(
        prefect_server: str, instant_url: str, tmp_path) -> None:
    """A server that answers every request with a 500 once the first batch is done (the other faults end a
    request the same way: the test above)."""
    fault, kind = "500", "http_500"
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.shards import verify_dataset
    from tests.conftest import instant_recipe, recipe_seed
    from tests.replay import cached_completions, preload_stories

    tinyforge = str(Path(sys.executable).parent / "tinyforge")
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    # the first two chat requests (batch 0: stories 0 and 1) go through; every later one gets the fault
    with FaultProxy(instant_url, plan={k: fault for k in range(3, 10_000)}, every=10**9) as proxy:
        recipe = instant_recipe(tmp_path / "flaky.toml", proxy.url, name="flaky", out=out, count=4, batch_size=2,
                                seed=recipe_seed(5), backend=("max_concurrency = 1\nmax_retries = 2\ntimeout_s = 60.0\n"
                                                              "backoff_s = 0.05\nmax_backoff_s = 0.1"))
        model_id = f"openai/instant@127.0.0.1:{proxy.port}"
        preload_stories(recipe, [2], model_id=model_id)  # so that the resumed build publishes whatever is sampled
        failed = subprocess.run([tinyforge, "build", str(recipe)], env=env, capture_output=True, text=True,
                                timeout=300)
        assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
        last = failed.stderr.strip().splitlines()[-1]
        assert last.startswith(
            f"tinyforge: backend {model_id}: a request failed 3 times (last: {kind}); "
            "finished completions are cached: run the same command to resume (details: "), last
        assert "Traceback" not in failed.stderr  # Prefect's tracebacks went to the log the line names
        assert "BackendFailed" in Path(last.rsplit("details: ", 1)[1].rstrip(")")).read_text()
        assert proxy.injected[fault] == 3 and proxy.forwarded == 2  # story 3: the first try and 2 retries
        # nothing published; what was generated is kept: batch 0 is finished, its completions are cached
        assert not (out / "flaky" / "dataset").exists()
        assert [p.name for p in (out / "flaky" / "stages").glob("generate.parts/*/part-*.json")] == ["part-00000.json"]
        assert cached_completions(out) == 1 + 2

        proxy.plan = {}  # the server recovers: the same command resumes and pays only for story 3
        done = subprocess.run([tinyforge, "build", str(recipe)], env=env, capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 model calls, 1 cache hits this run" in done.stdout and proxy.forwarded == 3
    assert verify_dataset(out / "flaky" / "dataset").manifest["stages"][0]["stats"]["in"] == 4
