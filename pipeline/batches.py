"""A stage made of batches: the one mechanism behind generation and evolution rounds.

A batched stage has a name (``generate``, ``round-2``), a fingerprint and the
item ranges of its batches. Each batch writes its share of the stage's tables
into the stage's parts (one task run each under Prefect) and is skipped when
its part is already there, so a killed build resumes at the first missing
batch. The gather commits every part as the stage's output, atomically.

What a batch does is the kind's: ``work(start, stop, models)`` returns the
tables of items ``start..stop``, using the models it opens from
:class:`Models`, which counts what they spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import polars as pl

from pipeline.llm import CachedBackend, ResponseCache, cache_path, load_backend
from pipeline.llm.config import BackendConfig
from pipeline.records import rejected_frame
from pipeline.stages import BuildDir, StageResult

USAGE_KEYS = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "retries")
BatchStats = dict[str, Any]  # one batch's report: batch, items, skipped, seconds and the USAGE_KEYS counters


class Models:
    """The model backends one batch uses, all over one response cache, and what they spent together."""

    def __init__(self, output_root: Path):
        self._cache = ResponseCache(cache_path(output_root))
        self._opened: dict[BackendConfig, CachedBackend] = {}

    def open(self, config: BackendConfig) -> CachedBackend:
        """The cached backend for ``config`` (the same one each time it is asked for in this batch)."""
        if config not in self._opened:
            self._opened[config] = CachedBackend(load_backend(config), self._cache)
        return self._opened[config]

    def usage(self) -> dict[str, int]:
        spent = [b.stats.as_dict() for b in self._opened.values()]
        return {k: sum(s[k] for s in spent) for k in USAGE_KEYS}

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._cache.close()


Work = Callable[[int, int, Models], Mapping[str, pl.DataFrame]]
Summarize = Callable[[Mapping[str, pl.DataFrame]], dict[str, Any]]


@dataclass(frozen=True)
class BatchedStage:
    """One batched stage of one build. ``tables`` names the stage's tables beyond ``records`` and
    ``rejected``, each with the schema it has when no batch wrote a row (a round's next ``pool``)."""

    build_dir: Path
    output_root: Path
    name: str
    fingerprint: str
    ranges: list[tuple[int, int]]
    tables: Mapping[str, Mapping[str, pl.DataType]] = field(default_factory=dict)

    @property
    def items(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def done(self) -> StageResult | None:
        return BuildDir(self.build_dir).done(self.name, self.fingerprint)

    def run_batch(self, batch: int, work: Work) -> BatchStats:
        """Write batch ``batch``'s tables into the stage's parts, unless it is there already."""
        parts = BuildDir(self.build_dir).parts(self.name, self.fingerprint)
        start, stop = self.ranges[batch]
        if parts.has(batch):
            return {"batch": batch, "items": stop - start, "skipped": True, "seconds": 0.0,
                    **dict.fromkeys(USAGE_KEYS, 0)}
        t0 = time.perf_counter()
        with Models(self.output_root) as models:
            tables = dict(work(start, stop, models))
            usage = models.usage()
        stats = {"batch": batch, "items": stop - start, "skipped": False, **usage, "seconds": time.perf_counter() - t0}
        parts.write(batch, tables, stats)
        return stats

    def gather(self, stats: Mapping[str, Any] | Summarize | None = None) -> StageResult:
        """Commit every finished batch as the stage's output (each must be finished), with ``stats`` added
        to the stage's own (items in, usage summed, rejections by reason); ``stats`` may be a function of
        the gathered tables (a summary of them)."""
        build = BuildDir(self.build_dir)
        if (done := build.done(self.name, self.fingerprint)) is not None:
            return done
        parts, n = build.parts(self.name, self.fingerprint), len(self.ranges)
        if missing := [b for b in range(n) if not parts.has(b)]:
            raise RuntimeError(f"{self.name}: batches {missing} are not finished")
        batch_stats = [parts.stats(b) for b in range(n)]
        empty = {"records": pl.DataFrame(), "rejected": rejected_frame([]),
                 **{t: pl.DataFrame(schema=dict(s)) for t, s in self.tables.items()}}
        tables: dict[str, pl.DataFrame | Iterator[pl.DataFrame]]
        if callable(stats):  # a summary of the whole tables (calibration's: hundreds of rows)
            tables = {t: frame if (frame := parts.read(range(n), t)).width else default
                      for t, default in empty.items()}
            extra = stats(tables)  # type: ignore[arg-type]  # every table is a frame on this path
        else:  # streamed a part at a time: a million generated records are never in memory at once
            tables = {t: default if (frames := parts.slices(range(n), t)) is None else frames
                      for t, default in empty.items()}
            extra = dict(stats or {})
        result = build.commit(self.name, self.fingerprint, tables, {
            "in": self.items, **extra,
            "usage": {k: sum(s.get(k, 0) for s in batch_stats) for k in USAGE_KEYS},
            "rejected_by_reason": parts.column_counts(range(n), "rejected", "reason")},
            sum(s["seconds"] for s in batch_stats))
        build.clear_parts(self.name)
        return result


def rejection_counts(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    return dict(rejected.group_by("reason").len().sort("reason").iter_rows())


def batch_ranges(count: int, batch_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + batch_size, count)) for a in range(0, count, batch_size)]
