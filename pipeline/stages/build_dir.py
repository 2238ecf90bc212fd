"""The build directory: stage outputs written atomically, skipped when still valid.

Layout of a build::

    <output_root>/<name>/
      stages/<stage>/            one folder per finished stage
        records.parquet          what the stage kept
        rejected.parquet         what it rejected, with the reason
        _stage.json              fingerprint of inputs + config, counts, timings
      stages/<stage>.parts/<fp>/ batches of a stage still in progress
      dataset/                   the published shards (see pipeline.publish)

A stage folder is written under a temporary name and renamed into place, and
``_stage.json`` is its last file, so a folder that exists is complete. A stage
whose fingerprint matches is not run again; that is how a killed build
resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import UserError

STAGE_META = "_stage.json"


@dataclass
class StageResult:
    name: str
    fingerprint: str
    path: Path
    rows: dict[str, int]  # table name -> row count
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Writing ``path``: a failure on a full disk is an OSError(ENOSPC) naming it, whatever the writer made
    of it (polars reports one as "Invalid thrift: transport error")."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        try:
            full = os.statvfs(path.parent).f_bavail == 0
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with disk_errors(tmp):
            df.write_parquet(tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a finished folder into place; the old one is removed only afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_parquet_slices(frames: Iterable[pl.DataFrame], path: Path) -> int:
    """Frames of one schema written one after another as a single Parquet file; returns the rows written."""
    writer, rows = None, 0
    try:
        for frame in frames:
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            rows += frame.height
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"{path.name}: no slices to write (give at least an empty frame)")
    return rows


def concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    frames = [f for f in frames if f.width]
    if not frames:
        return pl.DataFrame()
    # "relaxed": a column that is all-null in one batch and text in another unifies to text.
    return pl.concat(frames, how="diagonal_relaxed")


def release_memory() -> None:
    """Hand the memory a finished stage freed back to the system: without it the allocators (glibc's, which
    Python's large objects use, and Arrow's mimalloc) keep what one stage used, and the next stage's peak
    lands on top of it. (No ``gc.collect``: a stage's tables are freed by reference counting, and a
    collection of a process that imported prefect costs tens of milliseconds.)"""
    pa.default_memory_pool().release_unused()
    if _libc is not None:
        _libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only: musl has none
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def _intact(path: Path, rows: object) -> bool:
    """Whether a stage's table is there with the rows its meta says: its footer is read, not its data."""
    try:
        return pq.read_metadata(path).num_rows == rows
    except (OSError, pa.ArrowException):
        return False


class BuildDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stages = self.root / "stages"
        for path in (self.root, self.stages):
            if path.exists() and not path.is_dir():
                raise UserError(f"{path}: a file where a build's folder should be; move it away")

    def stage_path(self, name: str) -> Path:
        return self.stages / name

    def done(self, name: str, fingerprint: str) -> StageResult | None:
        """The stage's result if its output exists and was made from these inputs."""
        meta_path = self.stage_path(name) / STAGE_META
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint or not isinstance(meta.get("rows"), dict):
            return None
        if not all(_intact(self.stage_path(name) / f"{t}.parquet", rows) for t, rows in meta["rows"].items()):
            return None  # a table was removed or damaged since: the stage runs again
        return StageResult(name, fingerprint, self.stage_path(name), meta["rows"], meta.get("stats", {}),
                           meta.get("seconds", 0.0), skipped=True)

    def commit(self, name: str, fingerprint: str, tables: dict[str, pl.DataFrame | Iterable[pl.DataFrame]],
               stats: dict[str, Any], seconds: float) -> StageResult:
        """Write the stage's tables and meta as one folder, atomically. A table may be given as slices
        (an iterable of frames with one schema, at least one), written as they come: a stage filtering a
        million rows never holds a second, filtered copy of them."""
        self.stages.mkdir(parents=True, exist_ok=True)
        tmp = self.stages / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            rows = {}
            for table, df in tables.items():
                with disk_errors(tmp / f"{table}.parquet"):
                    if isinstance(df, pl.DataFrame):
                        df.write_parquet(tmp / f"{table}.parquet", compression="zstd")
                        rows[table] = df.height
                    else:
                        rows[table] = write_parquet_slices(df, tmp / f"{table}.parquet")
            meta = {"stage": name, "fingerprint": fingerprint, "rows": rows, "stats": stats, "seconds": seconds,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            write_json_atomic(meta, tmp / STAGE_META)
            replace_dir(tmp, self.stage_path(name))
        except BaseException:  # a full disk, an interrupt: the stage is not written, and nothing of it is left
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        release_memory()
        return StageResult(name, fingerprint, self.stage_path(name), rows, stats, seconds)

    def read(self, name: str, table: str = "records") -> pl.DataFrame:
        return pl.read_parquet(self.stage_path(name) / f"{table}.parquet")

    def parts(self, name: str, fingerprint: str) -> PartStore:
        return PartStore(self.stages / f"{name}.parts" / fingerprint[:16])

    def clear_parts(self, name: str) -> None:
        shutil.rmtree(self.stages / f"{name}.parts", ignore_errors=True)


class PartStore:
    """Finished batches of a stage in progress, one Parquet file per table and batch."""

    def __init__(self, path: Path):
        self.path = path

    def _file(self, part: int, table: str) -> Path:
        return self.path / f"{table}-{part:05d}.parquet"

    def _meta(self, part: int) -> Path:
        return self.path / f"part-{part:05d}.json"

    def has(self, part: int) -> bool:
        return self._meta(part).is_file()

    def write(self, part: int, tables: dict[str, pl.DataFrame], stats: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for table, df in tables.items():
            write_parquet_atomic(df, self._file(part, table))
        write_json_atomic({"part": part, "rows": {t: d.height for t, d in tables.items()}, "stats": stats},
                          self._meta(part))  # written last: marks the part complete

    def stats(self, part: int) -> dict[str, Any]:
        return json.loads(self._meta(part).read_text())["stats"]

    def read(self, parts: range, table: str) -> pl.DataFrame:
        return concat([pl.read_parquet(self._file(p, table)) for p in parts])

    def slices(self, parts: range, table: str) -> Iterator[pl.DataFrame] | None:
        """The parts' ``table`` a part at a time, each with the columns and types :meth:`read` would give the
        whole (the relaxed union of the parts' schemas, from their footers); None when no part has columns.
        A gather then holds one batch, not the stage."""
        files = [self._file(p, table) for p in parts]
        union = concat([pl.DataFrame(schema=pl.read_parquet_schema(f)) for f in files])
        if not union.width:
            return None

        def frames() -> Iterator[pl.DataFrame]:
            for f in files:
                part = pl.read_parquet(f)
                if part.width:
                    yield pl.concat([union, part], how="diagonal_relaxed")

        return frames()

    def column_counts(self, parts: range, table: str, column: str) -> dict[str, int]:
        """How often each value of ``column`` occurs in the parts' ``table`` (rejections by reason)."""
        counts: Counter[str] = Counter()
        for p in parts:
            f = self._file(p, table)
            if column in pl.read_parquet_schema(f):
                counts.update(pl.read_parquet(f, columns=[column])[column].to_list())
        return dict(sorted(counts.items()))
