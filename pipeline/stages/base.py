"""The stage contract: a :class:`Stage` declares its name and the recipe parts it reads, and runs as
``run(recipe, upstream)``; :func:`record_stage` and :func:`table_stage` give a stage fingerprinting, an
atomic commit and rejections with reasons.

A stage keeps or rejects the upstream stage's records and may add columns. :func:`record_stage` hands
its code the records as dicts; :func:`table_stage` hands it the upstream table (Arrow, only the columns
it reads) and writes its output a slice at a time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.batches import rejection_counts
from pipeline.fingerprint import declared_fingerprint
from pipeline.judge import Rubric
from pipeline.recipe import BaseRecipe
from pipeline.records import ColumnView, rejected_frame, rejection
from pipeline.stages import BuildDir, StageResult

R = TypeVar("R", bound=BaseRecipe)
Split = Literal["map", "whole"]


@dataclass(frozen=True)
class KindContext:
    """What a stage is told about the kind whose records it runs on: it never looks the kind up."""

    name: str
    text_field: str  # what dedup compares, rejections quote, fluency and decontamination read
    rubric: Rubric | None = None  # what the judge grades (None: the kind has no judge)
    schema_id: str | Path = ""  # the shard contract publish writes


@dataclass(frozen=True)
class Stage(Generic[R]):
    """A record stage: reads the upstream stage's output and writes its own (``run(recipe, upstream,
    kind)``, ``kind`` the :class:`KindContext` of the build's kind).

    ``reads``: the parts of the recipe its fingerprint covers (see ``pipeline.fingerprint``). ``split``: how
    the stage may be cut (docs/adding-a-stage.md): ``"map"``, its verdict on a record depends on that record
    alone, so any slice of the records can run on its own; ``"whole"``, it needs every record at once (a
    clustering, a model trained on them, a sample drawn from them). Every stage runs whole today."""

    name: str
    run: Callable[[R, StageResult, KindContext], StageResult]
    reads: tuple[str, ...] = ()
    split: Split = "map"


def stage_frame(rows: list[dict[str, Any]], build: BuildDir, upstream: StageResult) -> pl.DataFrame:
    if rows:
        return pl.DataFrame(rows, infer_schema_length=None)
    return build.read(upstream.name).clear()  # keep the columns even when nothing survives


Run = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]


def record_stage(recipe: BaseRecipe, name: str, upstream: StageResult, *, version: int, reads: Sequence[str],
                 run: Run, omit: Sequence[str] = (), extra: dict[str, Any] | None = None,
                 tables: Callable[[], dict[str, pl.DataFrame]] | None = None) -> StageResult:
    """A stage that keeps or rejects the upstream stage's records, skipped when its fingerprint matches.

    The fingerprint is the upstream's, the recipe parts the stage ``reads`` (less ``omit``), and ``extra``:
    what else decides the result (digests of files). ``run(records)`` returns (kept, rejected, extra stats);
    ``tables()``, called after it, gives any other tables the run made (the verify stage's samples).
    """
    build = BuildDir(recipe.build_dir)
    fp = declared_fingerprint(recipe, name, version, reads, omit=omit, **{"in": upstream.fingerprint, **(extra or {})})
    if (done := build.done(name, fp)) is not None:
        return done
    t0 = time.perf_counter()
    records = build.read(upstream.name).to_dicts()
    kept, rejected, extra = run(records)
    rej = rejected_frame(rejected)
    side = tables() if tables is not None else {}
    return build.commit(name, fp, {"records": stage_frame(kept, build, upstream), "rejected": rej, **side},
                        {"in": len(records), **extra, "rejected_by_reason": rejection_counts(rej)}, time.perf_counter() - t0)


ROWS_PER_CHUNK = 10_000  # rows turned into Python dicts at a time: what a stage's Python code holds


ROWS_PER_SLICE = 100_000  # rows of a stage's output written at a time (Arrow, not dicts)


def iter_rows(frame: pl.DataFrame, columns: Sequence[str] | None = None,
              chunk: int = ROWS_PER_CHUNK) -> Iterator[dict[str, Any]]:
    """The rows of ``frame`` (only ``columns``) as dicts, ``chunk`` at a time: a stage reading a million
    records never holds a million dicts."""
    view = frame.select(columns) if columns is not None else frame
    for start in range(0, view.height, chunk):
        yield from view.slice(start, chunk).iter_rows(named=True)


@dataclass
class Verdicts:
    """What a columnar stage decided about its input, row by row: columns to add (or replace), one value
    per input row, the rows it rejects with (reason, detail), and its stats."""

    columns: dict[str, Sequence[Any]] = field(default_factory=dict)
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def table_stage(recipe: BaseRecipe, name: str, upstream: StageResult, *, version: int, reads: Sequence[str],
                decide: Callable[[pl.DataFrame], Verdicts], text_field: str, columns: Sequence[str] | None = None,
                omit: Sequence[str] = (), extra: dict[str, Any] | None = None) -> StageResult:
    """A stage that keeps or rejects the upstream's records, as :func:`record_stage` does, but over Arrow:
    ``decide(frame)`` sees the upstream table (only ``columns``, those of them it has, when given) and reads
    what it needs (:func:`iter_rows`); then the upstream file is read again a slice at a time, and each
    slice's kept rows (with the verdicts' columns) and rejected rows (as dicts, for their ``record_json``,
    quoting ``text_field``) are written as they come. About a tenth of the CPU of a dict per record, and
    memory that holds the columns ``decide`` reads, not the corpus twice."""
    build = BuildDir(recipe.build_dir)
    fp = declared_fingerprint(recipe, name, version, reads, omit=omit, **{"in": upstream.fingerprint, **(extra or {})})
    if (done := build.done(name, fp)) is not None:
        return done
    t0 = time.perf_counter()
    path = upstream.path / "records.parquet"
    present = pq.read_schema(path).names
    frame = pl.read_parquet(path, columns=[c for c in columns if c in present] if columns is not None else None)
    n = frame.height
    verdicts = decide(frame)
    del frame
    added = [pl.Series(k, list(v), strict=False) for k, v in verdicts.columns.items()]  # one dtype per column
    keep = np.ones(n, dtype=bool)
    keep[list(verdicts.rejected)] = False

    def slices() -> Iterator[tuple[int, pl.DataFrame]]:
        offset, empty = 0, True
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_SLICE):
            part = pl.from_arrow(batch)
            assert isinstance(part, pl.DataFrame)
            yield offset, part.with_columns(c.slice(offset, part.height) for c in added)
            offset, empty = offset + part.height, False
        if empty:  # an empty table is one empty slice, so the output keeps the columns
            yield 0, pl.read_parquet(path).clear().with_columns(c.clear() for c in added)

    def kept() -> Iterator[pl.DataFrame]:
        for offset, part in slices():
            yield part.filter(pl.Series(keep[offset : offset + part.height]))

    def rejected() -> Iterator[pl.DataFrame]:
        for offset, part in slices():
            rows = np.flatnonzero(~keep[offset : offset + part.height]).tolist()
            yield rejected_frame([rejection(r, name, *verdicts.rejected[offset + i], text_field)
                                  for i, r in zip(rows, part[rows].iter_rows(named=True), strict=True)])

    by_reason = Counter(reason for reason, _ in verdicts.rejected.values())
    return build.commit(name, fp, {"records": kept(), "rejected": rejected()},
                        {"in": n, **verdicts.stats, "rejected_by_reason": dict(sorted(by_reason.items()))},
                        time.perf_counter() - t0)


class Pairs(Sequence[tuple[str, str]]):
    """(instruction, response) pairs over two columns, made when asked for: a sampled score of a million
    records reads the strings of its sample only."""

    def __init__(self, instructions: pl.Series, responses: pl.Series):
        self._a, self._b = instructions, responses

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i: int) -> tuple[str, str]:  # type: ignore[override]  # no slices are asked for
        return self._a[i], self._b[i]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(ColumnView(self._a), ColumnView(self._b), strict=True)
