"""The files of a published dataset folder, read as a careful reader must.

A dataset folder may come from anywhere (a mix source, a download, a shared
bucket), so its manifest is as untrusted as its shards. Every reader
(``tinyforge verify``, ``read_split``, the trainer loader, the mix kind) goes
through this module:

- **paths**: a manifest path is relative, has no ``..``, and names a regular
  file under the dataset folder, checked after resolving symlinks (a local
  folder); FIFOs, devices and directories are refused before they are opened;
- **bytes**: the size is read from the file system first, then at most the
  manifest's byte count is read and hashed, into memory Arrow owns (a Python
  ``bytes`` wrapped by Arrow can be freed by an Arrow thread after the
  interpreter started shutting down, which aborts the process);
- **decoding**: the Parquet footer is checked first (rows, uncompressed size),
  then text columns are read as dictionaries and their decoded size bounded
  before they are expanded: a 500-byte file of one repeated 1 MB value would
  otherwise decode to gigabytes.

Every failure is an :class:`~pipeline.errors.IntegrityError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from pipeline.errors import IntegrityError

MAX_MANIFEST_BYTES = 64 << 20  # a manifest lists shards: megabytes at most, never gigabytes
MAX_EXPANSION = 32  # decoded bytes per stored byte that a shard may reach: text compresses 3-5x
MIN_DECODE_LIMIT = 1 << 30  # a small shard may still decode to this much
CHUNK = 1 << 20


def decode_limit(file_bytes: int) -> int:
    """The most memory a shard of ``file_bytes`` may decode to."""
    return max(MIN_DECODE_LIMIT, MAX_EXPANSION * file_bytes)


def relative_path(rel: object, where: str) -> str:
    """A manifest's path for a file of the dataset: relative, POSIX, no ``..``, nothing odd."""
    if not isinstance(rel, str) or not rel:
        raise IntegrityError(f"{where}: a file path in the manifest is {rel!r}, not a relative path")
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts) \
            or ":" in parts[0]:
        raise IntegrityError(f"{where}: the manifest names {rel!r}: only paths inside the dataset folder are read")
    return rel


def _is_local(fs: AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


@dataclass(frozen=True)
class DatasetFolder:
    """A dataset folder on any fsspec file system; ``where`` names it in messages."""

    fs: AbstractFileSystem
    root: str
    where: str

    @property
    def local(self) -> bool:
        return _is_local(self.fs)

    def url(self, rel: str) -> str:
        path = f"{self.root}/{rel}"
        return path if self.local else self.fs.unstrip_protocol(path)

    def path(self, rel: object) -> str:
        """The file system path of the dataset's file ``rel``: a regular file inside the folder, or
        IntegrityError (a missing file says so)."""
        rel = relative_path(rel, self.where)
        path = f"{self.root}/{rel}"
        if self.local:
            real, root = os.path.realpath(path), os.path.realpath(self.root)
            if not real.startswith(root.rstrip("/") + "/"):
                raise IntegrityError(f"{path}: a link to {real}, outside the dataset folder: not read")
            try:
                mode = os.stat(real).st_mode
            except FileNotFoundError:
                raise IntegrityError(f"{path}: listed in the manifest but missing") from None
            except OSError as exc:
                raise IntegrityError(f"{path}: cannot be read ({exc.strerror})") from None
            if not stat.S_ISREG(mode):
                raise IntegrityError(f"{path}: not a regular file (a directory, FIFO or device): not read")
            return real
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise IntegrityError(f"{self.url(rel)}: listed in the manifest but missing") from None
        if info.get("type") != "file":
            raise IntegrityError(f"{self.url(rel)}: not a file: not read")
        return path

    def manifest(self, name: str) -> bytes:
        """The manifest's bytes (``name`` is its file name), a regular file inside the folder of at most
        MAX_MANIFEST_BYTES: a FIFO or /dev/zero in its place is refused, not read. FileNotFoundError
        when there is none (an unfinished or foreign folder)."""
        if not self.fs.exists(f"{self.root}/{name}"):
            raise FileNotFoundError(f"{self.root}/{name}")
        path = self.path(name)
        if (size := self.size(path)) > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{self.url(name)}: {size} bytes, too large for a manifest")
        with self.fs.open(path, "rb") as f:
            return f.read(MAX_MANIFEST_BYTES + 1)

    def size(self, path: str) -> int:
        return os.stat(path).st_size if self.local else int(self.fs.size(path))

    def read(self, rel: object, size: int, sha256: str | None) -> pa.Buffer:
        """The file's bytes in Arrow's memory, checked against the manifest's size and sha256: its size
        is compared before a byte is read, and no more than ``size`` bytes are ever read."""
        path = self.path(rel)
        url = self.url(str(rel))
        actual = self.size(path)
        if actual != size:
            raise IntegrityError(f"{url}: {actual} bytes, manifest says {size}")
        digest, sink, got = hashlib.sha256(), pa.BufferOutputStream(), 0
        with self.fs.open(path, "rb") as f:
            while got <= size and (chunk := f.read(min(CHUNK, size + 1 - got))):
                digest.update(chunk)
                sink.write(chunk)
                got += len(chunk)
        if got != size:  # it changed under us
            raise IntegrityError(f"{url}: {got} bytes read, manifest says {size}")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise IntegrityError(f"{url}: sha256 does not match the manifest")
        return sink.getvalue()

    def sha256(self, rel: object) -> str:
        """The sha256 of a listed file the manifest gives no size for, read in chunks."""
        digest = hashlib.sha256()
        with self.fs.open(self.path(rel), "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def schema(self, rel: object) -> pa.Schema:
        """A Parquet file's schema, from its footer only."""
        path = self.path(rel)
        try:
            with self.fs.open(path, "rb") as f:
                return pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IntegrityError(f"{self.url(str(rel))}: not a readable Parquet file ({exc})") from None


def parquet_file(source: pa.Buffer, url: str, rows: int | None, limit: int) -> pq.ParquetFile:
    """The Parquet file in ``source``, its footer checked: the manifest's row count, and no more than
    ``limit`` bytes once its pages are uncompressed."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(source))
        md = pf.metadata
        uncompressed = sum(md.row_group(i).column(j).total_uncompressed_size
                           for i in range(md.num_row_groups) for j in range(md.num_columns))
    except (pa.ArrowException, OSError) as exc:
        raise IntegrityError(f"{url}: not a readable Parquet file ({exc})") from None
    if rows is not None and md.num_rows != rows:
        raise IntegrityError(f"{url}: {md.num_rows} rows, manifest says {rows}")
    if uncompressed > limit:
        raise IntegrityError(f"{url}: its pages uncompress to {uncompressed} bytes, more than the {limit} "
                             "a shard of its size may (a Parquet bomb?): not read")
    return pf


def _byte_array_paths(pf: pq.ParquetFile, names: Sequence[str]) -> list[str]:
    """The Parquet leaf columns of ``names`` that hold strings or bytes (``words.list.element`` for a list
    of strings): the ones a dictionary page can make decode to far more than they store."""
    wanted = set(names)
    paths = []
    for i in range(pf.metadata.num_columns):
        col = pf.schema.column(i)
        if col.physical_type == "BYTE_ARRAY" and col.path.split(".")[0] in wanted:
            paths.append(col.path)
    return paths


def _decoded_bytes(array: pa.Array) -> int:
    """What ``array`` takes once every dictionary in it is expanded, computed without expanding one."""
    if isinstance(array, pa.DictionaryArray):
        lengths = pc.take(pc.binary_length(array.dictionary), array.indices)
        return (pc.sum(lengths).as_py() or 0) + 8 * len(array)  # the values, and an offset each
    if isinstance(array, (pa.ListArray, pa.LargeListArray)):
        return array.offsets.nbytes + _decoded_bytes(array.values)
    if isinstance(array, pa.StructArray):
        return sum(_decoded_bytes(array.field(i)) for i in range(array.type.num_fields))
    return array.nbytes


def decode(source: pa.Buffer, url: str, rows: int | None, columns: Sequence[str] | None = None,
           threads: bool = True, limit: int | None = None) -> pa.Table:
    """A Parquet shard's ``columns`` (None: all), its decoded size bounded by ``limit`` (default
    :func:`decode_limit` of its size) before any column is expanded; the table is as a plain read
    makes it."""
    limit = limit if limit is not None else decode_limit(source.size)
    pf = parquet_file(source, url, rows, limit)
    schema = pf.schema_arrow
    names = list(columns) if columns is not None else schema.names
    missing = [c for c in names if c not in schema.names]
    if missing:
        raise IntegrityError(f"{url}: no column {', '.join(missing)} (other shards of the split have it)")
    try:
        reader = pq.ParquetFile(pa.BufferReader(source), read_dictionary=_byte_array_paths(pf, names))
    except (pa.ArrowException, OSError) as exc:
        raise IntegrityError(f"{url}: not a readable Parquet file ({exc})") from None
    parts, size = [], 0
    for g in range(reader.num_row_groups):  # a row group at a time: a bomb stops at the first that is too big
        try:
            part = reader.read_row_group(g, columns=names, use_threads=threads)
        except (pa.ArrowException, OSError) as exc:
            raise IntegrityError(f"{url}: not a readable Parquet file ({exc})") from None
        size += sum(_decoded_bytes(chunk) for c in names for chunk in part[c].chunks)
        if size > limit:
            raise IntegrityError(f"{url}: decodes to more than the {limit} bytes a shard of its size may "
                                 "(a Parquet bomb?): not read")
        parts.append(_expanded(part, schema, names))
    if not parts:
        return schema.empty_table().select(names)
    return pa.concat_tables(parts)


def _expanded(part: pa.Table, schema: pa.Schema, names: Sequence[str]) -> pa.Table:
    """``part`` with every column read as dictionaries cast back to the file's own type."""
    for i, c in enumerate(names):
        want = schema.field(c)
        if part.schema.field(i).type != want.type:
            part = part.set_column(i, want, pc.cast(part[c], want.type))
    return part


def concat_shards(tables: list[pa.Table], where: str) -> pa.Table:
    """A split's shards (at least one) as one table; shards whose columns disagree are an IntegrityError
    naming ``where``, not Arrow's error."""
    try:
        return pa.concat_tables(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise IntegrityError(f"{where}: its shards have different columns ({str(exc).splitlines()[0]})") from None


def listed_files(manifest: dict[str, Any], where: str) -> dict[str, tuple[int | None, str | None]]:
    """Every file a manifest lists, with its size and sha256 where it gives them: the shards of every
    split and configuration, the rejected table, the schemas, the plots."""
    files: dict[str, tuple[int | None, str | None]] = {}
    for meta in manifest["splits"].values():
        for shard in meta["shards"]:
            files[relative_path(shard["path"], where)] = (shard["bytes"], shard["sha256"])
        if isinstance(meta.get("schema"), dict):
            files[relative_path(meta["schema"]["file"], where)] = (None, meta["schema"]["sha256"])
    if isinstance(manifest.get("schema"), dict):
        files[relative_path(manifest["schema"]["file"], where)] = (None, manifest["schema"]["sha256"])
    if isinstance(manifest.get("rejected"), dict):
        files[relative_path(manifest["rejected"]["path"], where)] = (None, manifest["rejected"]["sha256"])
    for rel in (manifest.get("plots") or {}).values():
        files[relative_path(rel, where)] = (None, None)
    return files
