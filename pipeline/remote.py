"""Datasets and the response cache on any fsspec filesystem.

The build directory itself stays local (stage folders are renamed into place,
SQLite needs a real file); what leaves the machine are finished things:

* a published dataset, copied to ``<publish_to>/<build name>/`` with its
  manifest written last, so a reader that finds a manifest finds every shard
  it lists (``pipeline.loader.ShardDataset`` then verifies the checksums);
* the response cache, as immutable Parquet segments under ``cache_url``:
  a run imports the segments it has not seen into its local SQLite before
  it starts and writes one segment of what it generated when it ends (also
  when it fails: completions are never lost). Segments are never rewritten,
  so concurrent builds on many machines need no lock.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import IntegrityError
from pipeline.llm.cache import ROW_COLUMNS, ResponseCache
from pipeline.shard_format import MANIFEST

# A segment's columns, by Arrow type family: what import_rows stores (export_rows makes them).
_TEXT = ("key", "model_id", "text", "finish_reason", "request_json")
_COUNTS = ("sample_index", "prompt_tokens", "completion_tokens")

def _fs(url: str, options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(url, **options)


def upload_dataset(local: Path, url: str, options: dict[str, Any] | None = None) -> str:
    """Copy a published dataset folder to ``url``; the manifest goes last. Returns the URL.

    A copy whose manifest already has this dataset's fingerprint is left as it is.
    """
    fs, root = _fs(url, options or {})
    manifest = json.loads((local / MANIFEST).read_text())
    remote_manifest = f"{root}/{MANIFEST}"
    files = sorted(p for p in local.rglob("*") if p.is_file() and p.name != MANIFEST)
    if _same_copy(fs, root, remote_manifest, manifest, local, files):
        return url
    if fs.exists(remote_manifest):
        fs.rm(remote_manifest)  # readers must not pair the old manifest with new or repaired shards
    for path in files:
        target = f"{root}/{path.relative_to(local).as_posix()}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), target)
        if fs.size(target) != path.stat().st_size:
            raise OSError(f"{target}: upload incomplete ({fs.size(target)} of {path.stat().st_size} bytes)")
    fs.put_file(str(local / MANIFEST), remote_manifest)
    return url


def _remote_size(fs: fsspec.AbstractFileSystem, path: str) -> int | None:
    try:
        return int(fs.size(path))
    except (FileNotFoundError, OSError):
        return None


def _same_copy(fs: fsspec.AbstractFileSystem, root: str, remote_manifest: str, manifest: dict[str, Any],
               local: Path, files: list[Path]) -> bool:
    """Whether the copy at ``root`` is this dataset, whole: its manifest has this fingerprint and every
    file is there at its size (a damaged copy, a shard truncated or removed, is repaired, not trusted)."""
    try:
        with fs.open(remote_manifest, "rb") as f:
            remote = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(remote, dict) or remote.get("fingerprint") != manifest.get("fingerprint"):
        return False
    return all(_remote_size(fs, f"{root}/{p.relative_to(local).as_posix()}") == p.stat().st_size for p in files)


def pull_cache(cache: ResponseCache, url: str, options: dict[str, Any] | None = None) -> int:
    """Import the segments under ``url`` this cache has not imported yet; returns the rows imported."""
    fs, root = _fs(url, options or {})
    if not fs.exists(root):
        return 0
    seen = cache.seen_segments(url)
    rows = 0
    for path in sorted(fs.glob(f"{root}/*.parquet")):
        name = path.rsplit("/", 1)[-1]
        if name in seen:
            continue
        table = _read_segment(fs, path, fs.unstrip_protocol(path))
        cache.import_rows(table.to_pylist())
        cache.mark_segment(url, name)
        rows += table.num_rows
    return rows


def _read_segment(fs: fsspec.AbstractFileSystem, path: str, where: str) -> pa.Table:
    """A shared cache segment, its columns checked before a row of it is imported: text where text is
    stored, whole non-negative numbers for the indices and token counts, no nulls."""
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except (pa.ArrowException, OSError) as exc:
        raise IntegrityError(f"{where}: not a readable cache segment ({exc}); remove it from the shared cache") \
            from None
    missing = [c for c in ROW_COLUMNS if c not in table.column_names]
    if missing:
        raise IntegrityError(f"{where}: a cache segment without {', '.join(missing)}; remove it from the shared cache")
    table = table.select(list(ROW_COLUMNS))
    for name in ROW_COLUMNS:
        column = table[name]
        kind = column.type
        ok = (pa.types.is_string(kind) or pa.types.is_large_string(kind)) if name in _TEXT else \
            pa.types.is_integer(kind) if name in _COUNTS else pa.types.is_floating(kind) or pa.types.is_integer(kind)
        if not ok or column.null_count:
            raise IntegrityError(f"{where}: column {name} of a cache segment is {kind}"
                                 f"{' with nulls' if column.null_count else ''}; remove it from the shared cache")
        if name in _COUNTS and len(column) and pc.min(column).as_py() < 0:
            raise IntegrityError(f"{where}: negative {name} in a cache segment; remove it from the shared cache")
    return table


def push_cache(cache: ResponseCache, url: str, since: float, label: str,
               options: dict[str, Any] | None = None) -> int:
    """Write the completions stored since ``since`` as one new segment; returns its rows (0: no segment)."""
    rows = cache.rows_since(since)
    if not rows:
        return 0
    fs, root = _fs(url, options or {})
    fs.makedirs(root, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{label}-{uuid.uuid4().hex[:8]}.parquet"
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    # Written under a name no reader globs, then moved: a half-written segment is never imported.
    tmp = f"{root}/.{name}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(buf.getvalue())
    fs.mv(tmp, f"{root}/{name}")
    cache.mark_segment(url, name)  # our own segment needs no import
    return len(rows)
