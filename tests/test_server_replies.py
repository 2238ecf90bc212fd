"""What an OpenAI-compatible server says is checked before anything keeps it (issue 29, items 5, 6, 8).

A real HTTP server on 127.0.0.1 (tests.servers.ScriptedServer) answers with what a careless or
hostile server sends: negative, fractional or absurd usage counts, a finish reason that is an
object, no text, ``Retry-After: soon``, a gzip bomb. Each such reply is a retried error, never a
cached completion and never a traceback; a shared cache segment never replaces what a machine
already has, and a damaged one is one line naming it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import IntegrityError
from pipeline.llm import CachedBackend, ChatRequest, Message, ResponseCache, SamplingParams
from pipeline.llm.openai_backend import BackendFailed, OpenAIBackend, retry_after_seconds
from pipeline.llm.config import OpenAIBackendConfig
from pipeline.remote import pull_cache, push_cache
from tests.conftest import REPO
from tests.servers import ScriptedServer, chat_reply

PARAMS = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=16, repeat_penalty=1.1)
JSON = {"Content-Type": "application/json"}


def config(url: str, **kw) -> OpenAIBackendConfig:
    return OpenAIBackendConfig(base_url=url, model="m", **{"max_concurrency": 2, "timeout_s": 10.0,
                                                           "backoff_s": 0.01, "max_backoff_s": 0.05,
                                                           "max_retries": 3, **kw})


def ask(k: int = 2) -> list[ChatRequest]:
    return [ChatRequest((Message("user", f"Tell story {i}."),), PARAMS, seed=i) for i in range(k)]


HOSTILE = {
    "negative usage": chat_reply(prompt_tokens=-5000),
    "fractional usage": chat_reply(completion_tokens=2.5),
    "usage of 10**30": chat_reply(completion_tokens=10**30),
    "usage as text": chat_reply(prompt_tokens="12"),
    "finish reason an object": chat_reply(finish={"type": "stop"}),
    "finish reason a long text": chat_reply(finish="x" * 5000),
    "content null": chat_reply(text=None),  # type: ignore[arg-type]
    "no choices": json.dumps({"choices": []}).encode(),
    "a list, not an object": b"[1, 2]",
}


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_reply_is_retried_and_never_cached(tmp_path: Path, name: str, transport: str) -> None:
    """The first two answers to each prompt are hostile, the third is good: the good one is what is
    returned and cached, and the hostile ones show as retries."""
    def answer(body: dict, seen: int) -> tuple[int, dict, bytes]:
        return (200, JSON, HOSTILE[name]) if seen < 2 else (200, JSON, chat_reply("Good.", "stop", 7, 2))

    cache = ResponseCache(tmp_path / "c.sqlite")
    with ScriptedServer(answer) as server:
        backend = OpenAIBackend(config(server.url, transport=transport))
        got = CachedBackend(backend, cache).generate(ask())
    assert [[(c.text, c.prompt_tokens, c.completion_tokens) for c in cs] for cs in got] == [[("Good.", 7, 2)]] * 2
    assert backend.stats()["retries"] == 4, backend.stats()
    rows = cache.rows_since(0)
    assert len(rows) == 2 and {(r["text"], r["prompt_tokens"]) for r in rows} == {("Good.", 7)}


def test_a_server_that_never_answers_well_fails_the_request_and_caches_nothing(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    with ScriptedServer(lambda body, seen: (200, JSON, HOSTILE["negative usage"])) as server:
        with pytest.raises(BackendFailed, match="invalid_response"):
            CachedBackend(OpenAIBackend(config(server.url)), cache).generate(ask(1))
    assert len(cache) == 0


@pytest.mark.parametrize("value", ["soon", "Mon, 99 Foo 2026 99:99:99 GMT", "nan", "-inf", "", "inf"])
def test_an_unreadable_retry_after_leaves_the_backoff_to_decide(value: str) -> None:
    assert retry_after_seconds(value) is None or retry_after_seconds(value) == float("inf")
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("-3") == 0.0


def test_a_429_with_retry_after_soon_is_retried(tmp_path: Path) -> None:
    def answer(body: dict, seen: int) -> tuple[int, dict, bytes]:
        return (429, {"Retry-After": "soon", **JSON}, b"{}") if seen == 0 else (200, JSON, chat_reply())

    with ScriptedServer(answer) as server:
        backend = OpenAIBackend(config(server.url))
        got = backend.generate(ask(1))
    assert got[0][0].text == "A story." and backend.stats()["retries_by_kind"] == {"rate_limited": 1}


def gzip_bomb(decompressed: int) -> bytes:
    """``decompressed`` bytes of zeros as gzip, made a megabyte at a time."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [z.compress(block) for _ in range(decompressed >> 20)]
    return b"".join(out) + z.flush()


BOMB_CLIENT = """
import sys
from pipeline.llm import ChatRequest, Message, SamplingParams
from pipeline.llm.openai_backend import BackendFailed, OpenAIBackend
from pipeline.recipe import OpenAIBackendConfig
cfg = OpenAIBackendConfig(base_url=sys.argv[1], model="m", transport=sys.argv[2], max_concurrency=4, max_retries=1,
                          backoff_s=0.01, max_backoff_s=0.05, timeout_s=60)
requests = [ChatRequest((Message("user", f"story {i}"),), SamplingParams(), seed=i) for i in range(4)]
try:
    OpenAIBackend(cfg).generate(requests)
    print("answered")
except BackendFailed as exc:
    print("failed", exc)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_a_gzip_bomb_is_refused_without_the_memory_it_would_take(transport: str) -> None:
    """Four requests at once, each answered by 1 MB of gzip that inflates to 1 GiB: the client stops
    reading each at 16 MB, and its peak memory stays far below one bomb's size."""
    bomb = gzip_bomb(1 << 30)
    assert len(bomb) < 2 << 20
    with ScriptedServer(lambda body, seen: (200, {"Content-Encoding": "gzip", **JSON}, bomb)) as server:
        out = subprocess.run([sys.executable, "-c", BOMB_CLIENT, server.url, transport], capture_output=True,
                             text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    first, peak = out.stdout.splitlines()
    assert first.startswith("failed") and "oversized_response" in first, out.stdout
    assert int(peak) < 400 * 1024, peak  # KB


# --- the shared cache (cache_url) -------------------------------------------------------------------------


def row(key: str, text: str, created: float = 1.0, **kw) -> dict:
    return {"key": key, "model_id": "m", "sample_index": 0, "text": text, "finish_reason": "stop",
            "prompt_tokens": 3, "completion_tokens": 2, "request_json": "{}", "created_at": created, **kw}


def test_a_shared_segment_never_replaces_what_this_cache_holds(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'shared'}"
    other = ResponseCache(tmp_path / "other.sqlite")
    other.import_rows([row("k1", "THEIR TEXT"), row("k2", "theirs only")])
    assert push_cache(other, url, 0, "other") == 2
    mine = ResponseCache(tmp_path / "mine.sqlite")
    mine.import_rows([row("k1", "my text")])
    assert pull_cache(mine, url) == 2
    texts = {r["key"]: r["text"] for r in mine.rows_since(0)}
    assert texts == {"k1": "my text", "k2": "theirs only"}


@pytest.mark.parametrize(("damage", "why"), [
    (lambda p: p.write_bytes(b"PAR1 not parquet at all"), "not a readable cache segment"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable cache segment"),
    (lambda p: pq.write_table(pa.table({"key": ["k"], "text": ["t"]}), p), "without model_id"),
    (lambda p: pq.write_table(pa.Table.from_pylist([row("k", "t", prompt_tokens=-5)]), p), "negative prompt_tokens"),
    (lambda p: pq.write_table(pa.Table.from_pylist([row("k", None)]), p), "column text"),
    (lambda p: pq.write_table(pa.Table.from_pylist([row("k", "t", prompt_tokens="3")]), p), "column prompt_tokens"),
])
def test_a_damaged_shared_segment_is_one_line_naming_it(tmp_path: Path, damage, why: str) -> None:
    url = f"file://{tmp_path / 'shared'}"
    other = ResponseCache(tmp_path / "other.sqlite")
    other.import_rows([row("k1", "t")])
    push_cache(other, url, 0, "other")
    (segment,) = (tmp_path / "shared").glob("*.parquet")
    damage(segment)
    mine = ResponseCache(tmp_path / "mine.sqlite")
    with pytest.raises(IntegrityError, match=why) as info:
        pull_cache(mine, url)
    assert segment.name in str(info.value) and "\n" not in str(info.value)
    assert len(mine) == 0
