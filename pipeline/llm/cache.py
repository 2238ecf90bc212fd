"""A persistent, content-addressed cache of LLM completions.

Key: sha256 over (model id, messages, sampling parameters, seed, sample
index). A re-run of a build, or a build killed half-way and started again,
never pays twice for a completion it already has. Completions are stored as
the backend returns them and committed at least every ``COMMIT_EVERY_S``
seconds (and when a batch ends), so a SIGKILL loses at most that long of
work; a commit per completion cost more CPU than the rest of the client
(``benchmarks/pipeline.py``).

The store is one SQLite file (WAL mode), shared by every build under an
output root. Nothing secret is part of a key or a row: API keys never reach
this layer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from pipeline.errors import UserError
from pipeline.llm.types import Backend, ChatRequest, Completion, OnDone

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key               TEXT PRIMARY KEY,
    model_id          TEXT NOT NULL,
    sample_index      INTEGER NOT NULL,
    text              TEXT NOT NULL,
    finish_reason     TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    request_json      TEXT NOT NULL,
    created_at        REAL NOT NULL
)
"""


_SEGMENTS = """
CREATE TABLE IF NOT EXISTS remote_segments (url TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (url, name))
"""


def request_key(model_id: str, request: ChatRequest, sample_index: int) -> str:
    payload = {
        "model": model_id,
        "messages": [[m.role, m.content] for m in request.messages],
        "params": request.params.to_dict(),
        "seed": request.seed,
        "sample": sample_index,
    }
    if request.json_schema is not None:  # absent otherwise, so older keys stay valid
        payload["schema"] = request.json_schema
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


COMMIT_EVERY_S = 0.5
LOCK_TIMEOUT_ENV = "TINYFORGE_CACHE_LOCK_TIMEOUT_S"  # how long a locked file is waited for (default 60 s)
ROW_COLUMNS = ("key", "model_id", "sample_index", "text", "finish_reason", "prompt_tokens", "completion_tokens",
               "request_json", "created_at")


class CacheError(UserError):
    """The response cache's file cannot be used as it is: damaged, read-only, locked, or its disk full."""


def _lock_timeout() -> float:
    return float(os.environ.get(LOCK_TIMEOUT_ENV, "60"))


def _why(exc: sqlite3.Error, path: Path) -> str:
    text = str(exc)
    if "unable to open" in text and not os.access(path.parent, os.W_OK):
        text = "readonly"  # SQLite cannot make its journal beside a file in a folder it may not write
    if "locked" in text or "busy" in text:
        return (f"locked by another process for {_lock_timeout():g} s (another build on this output root?); "
                "run again when it has finished")
    if "readonly" in text or "read-only" in text:
        return "read-only; make it (and its folder) writable"
    if "full" in text:
        return "its disk is full; free some space and run again (what it holds is kept)"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return ("damaged (" + text + "); move it aside to start an empty one: its completions would be asked "
                "for again")
    return text


class ResponseCache:
    """Completions by key, in one SQLite file. Safe to share between threads. Every failure of the file
    itself is a one-line :class:`CacheError` naming it."""

    def __init__(self, path: str | Path):
        self._last_commit = time.monotonic()
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"{self.path.parent}: cannot hold the response cache ({exc.strerror})") from None
        self._lock = threading.Lock()
        with self._errors():
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=_lock_timeout())
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A key index of a million builds' rows outgrows SQLite's 2 MB default page cache, and every insert
            # of a random key then reads pages back: 64 MB keeps ~1.5M keys' index in memory.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.execute(_SCHEMA)
            self._db.execute(_SEGMENTS)
            self._db.commit()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise CacheError(f"{self.path}: the response cache is {_why(exc, self.path)}") from None

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._lock, self._errors():
            for start in range(0, len(keys), 500):  # SQLite caps bound parameters
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens "
                    f"FROM completions WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, text, finish, pt, ct in rows:
                    found[key] = Completion(text, finish, pt, ct, cached=True)
        return found

    def put_many(self, model_id: str, request: ChatRequest, completions: Sequence[Completion],
                 keys: Sequence[str] | None = None) -> None:
        """Store a request's completions; ``keys``: their :func:`request_key` values, when the caller has them."""
        # For people and fixture exports only (keys are request_key's): orjson, a tenth of json's CPU.
        request_json = orjson.dumps(
            {"messages": [[m.role, m.content] for m in request.messages], "params": request.params.to_dict(),
             "seed": request.seed}).decode()
        keys = keys if keys is not None else [request_key(model_id, request, i) for i in request.sample_indices]
        now = time.time()
        rows = [(key, model_id, i, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens, request_json, now)
                for key, i, c in zip(keys, request.sample_indices, completions, strict=True)]
        with self._lock, self._errors():
            self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?,?,?,?)", rows)
            if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
                self._commit()

    def flush(self) -> None:
        """Commit what is stored (a batch's end; :meth:`close` does it too)."""
        with self._lock, self._errors():
            self._commit()

    def _commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()

    def export_rows(self, keys: Sequence[str]) -> list[dict[str, object]]:
        """The stored rows for these keys, as plain dicts (e.g. to ship real completions as test fixtures)."""
        with self._lock, self._errors():
            rows = [self._db.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM completions WHERE key = ?", (k,)).fetchone()
                    for k in keys]
        return [dict(zip(ROW_COLUMNS, r, strict=True)) for r in rows if r is not None]

    def import_rows(self, rows: Sequence[dict[str, object]]) -> int:
        """Store rows made by :meth:`export_rows`, keys as they are; a key this cache already holds keeps
        its own completion (what this machine generated, and perhaps published, is never replaced).
        Returns how many rows were new."""
        with self._lock, self._errors():
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?,?)",
                                 [tuple(r[c] for c in ROW_COLUMNS) for r in rows])
            self._db.commit()
            return self._db.total_changes - before

    def rows_since(self, t: float) -> list[dict[str, object]]:
        """Rows stored at or after time ``t`` (what a run added, to share with other machines)."""
        with self._lock, self._errors():
            keys = [k for (k,) in self._db.execute("SELECT key FROM completions WHERE created_at >= ?", (t,))]
        return self.export_rows(keys)

    # Which segments of a shared cache (pipeline.remote) this file already holds.
    def seen_segments(self, url: str) -> set[str]:
        with self._lock, self._errors():
            return {n for (n,) in self._db.execute("SELECT name FROM remote_segments WHERE url = ?", (url,))}

    def mark_segment(self, url: str, name: str) -> None:
        with self._lock, self._errors():
            self._db.execute("INSERT OR IGNORE INTO remote_segments VALUES (?, ?)", (url, name))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock, self._errors():
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock, self._errors():
            self._db.commit()
            self._db.close()


@dataclass
class CacheStats:
    hits: int = 0  # completions served from the cache
    misses: int = 0  # completions the model had to produce
    prompt_tokens: int = 0  # spent on misses only: what this run paid for
    completion_tokens: int = 0

    retries: int = 0  # requests the backend had to repeat (rate limits, errors, timeouts)

    def as_dict(self) -> dict[str, int]:
        return {"cache_hits": self.hits, "model_calls": self.misses, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "retries": self.retries}


class CachedBackend:
    """Wraps a backend so that only completions missing from the cache are generated."""

    def __init__(self, backend: Backend, cache: ResponseCache):
        self.backend = backend
        self.cache = cache
        self.stats = CacheStats()

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        model_id = self.backend.model_id
        keys = [[request_key(model_id, r, i) for i in r.sample_indices] for r in requests]
        hits = self.cache.get_many([k for ks in keys for k in ks])

        results: list[list[Completion | None]] = [[hits.get(k) for k in ks] for ks in keys]
        # Ask the backend only for the missing samples, as contiguous runs so a
        # backend that samples n at once (OpenAI's `n`) still can.
        pending: list[tuple[int, ChatRequest, list[str]]] = []
        for ri, (request, got) in enumerate(zip(requests, results, strict=True)):
            self.stats.hits += sum(c is not None for c in got)
            start = None
            for offset, c in enumerate([*got, "end"]):
                if c is None and start is None:
                    start = offset
                elif c is not None and start is not None:
                    sub = ChatRequest(request.messages, request.params, request.seed, n=offset - start,
                                      first_sample=request.first_sample + start, json_schema=request.json_schema)
                    pending.append((ri, sub, keys[ri][start:offset]))
                    start = None
            if on_done and all(c is not None for c in got):
                on_done(ri, got)  # type: ignore[arg-type]

        persisted: set[int] = set()

        def persist(pi: int, completions: list[Completion]) -> None:
            persisted.add(pi)
            ri, sub, sub_keys = pending[pi]
            self.cache.put_many(model_id, sub, completions, sub_keys)
            self.stats.misses += len(completions)
            self.stats.prompt_tokens += sum(c.prompt_tokens for c in completions)
            self.stats.completion_tokens += sum(c.completion_tokens for c in completions)
            base = sub.first_sample - requests[ri].first_sample
            results[ri][base : base + sub.n] = completions
            if on_done and all(c is not None for c in results[ri]):
                on_done(ri, results[ri])  # type: ignore[arg-type]

        if pending:
            before = _retries(self.backend)
            try:
                returned = self.backend.generate([sub for _, sub, _ in pending], on_done=persist)
            finally:
                self.stats.retries += _retries(self.backend) - before
                self.cache.flush()  # what was generated is kept, whether the batch ended well or not
            for pi, completions in enumerate(returned):
                if pi not in persisted:  # a backend that ignores on_done still gets cached
                    persist(pi, completions)
            self.cache.flush()
        return results  # type: ignore[return-value]


def _retries(backend: Backend) -> int:
    stats = getattr(backend, "stats", None)
    return stats()["retries"] if callable(stats) else 0
