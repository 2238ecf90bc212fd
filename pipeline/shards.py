"""Reading published datasets, checksums first.

The reader's side of the shard contract: it imports the format from
``pipeline.shard_format`` and nothing of the writer (``pipeline.publish``,
recipes). polars is imported by ``read_split`` alone, and the torch loader
(``ShardDataset``, ``ShardLoader``, ``collate``, in ``pipeline.loader``) only
when one of them is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from pipeline.dataset_files import DatasetFolder, concat_shards, decode, listed_files
from pipeline.errors import IntegrityError
from pipeline.shard_format import MANIFEST, read_manifest

if TYPE_CHECKING:
    import polars as pl

# Files of a dataset folder the manifest need not list: itself, and what is made from it for people.
UNLISTED = frozenset({MANIFEST, "README.md", "report.md"})


@dataclass(frozen=True)
class VerifiedDataset:
    path: Path
    manifest: dict[str, Any]
    files: dict[str, tuple[int | None, str | None]]  # what the manifest lists: path -> (bytes, sha256)

    @property
    def splits(self) -> list[str]:
        """The splits that partition the records (not subsets such as the S2L selection, nor other tables
        such as a math build's ``verifier`` configuration)."""
        return [k for k, v in self.manifest["splits"].items() if not v.get("subset_of") and not v.get("config")]

    def shards(self, split: str) -> list[dict[str, Any]]:
        try:
            return self.manifest["splits"][split]["shards"]
        except KeyError:
            raise IntegrityError(f"{self.path}: no split {split!r} (has {', '.join(self.manifest['splits'])})") from None

    def table(self, split: str) -> pa.Table:
        """A split's rows, every shard read through the checks of :mod:`pipeline.dataset_files` again (the
        bytes that are decoded are the bytes that were checked)."""
        folder = _folder(self.path)
        tables = [decode(folder.read(s["path"], s["bytes"], s["sha256"]), folder.url(s["path"]), s["rows"])
                  for s in self.shards(split)]
        return concat_shards(tables, f"{self.path}: split {split!r}") if tables else pa.table({})


def _folder(root: Path) -> DatasetFolder:
    return DatasetFolder(LocalFileSystem(), str(root), str(root))


def _root(path: str | Path) -> Path:
    root = Path(path)
    return root.parent if root.name == MANIFEST else root


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A dataset folder's manifest (``path`` is the folder or its manifest), checked."""
    root = _root(path)
    if not root.is_dir():
        raise IntegrityError(f"{root}: no such dataset folder")
    return read_manifest(lambda: _folder(root).manifest(MANIFEST), str(root / MANIFEST))


def unlisted_files(root: Path, listed: set[str]) -> list[str]:
    """Files (and links, FIFOs...) in the dataset folder that the manifest does not list: a reader
    that globs the folder (``datasets.load_dataset``, DuckDB over ``data/*.parquet``) would read them
    although nothing vouches for them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in listed and rel not in UNLISTED:
                found.append(rel)
    return sorted(found)


def open_dataset(path: str | Path) -> VerifiedDataset:
    """The dataset at ``path`` with its manifest checked, and nothing in the folder it does not list:
    what every reader does first. Each file is checked as it is read (:meth:`VerifiedDataset.table`)."""
    root = _root(path)
    manifest = load_manifest(root)
    listed = listed_files(manifest, str(root))
    if extra := unlisted_files(root, set(listed)):
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise IntegrityError(f"{root / extra[0]}{more}: not listed in the manifest; readers that glob the folder "
                             "would read it unchecked")
    return VerifiedDataset(root, manifest, listed)


def intact_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a dataset folder whose files are all there at the sizes it says, with nothing
    unlisted beside them (a look at the folder, no file read); None when anything is off. What a build
    checks before it reuses its own published dataset: a damaged one is published again, never reused."""
    try:
        ds = open_dataset(path)
    except (IntegrityError, OSError):
        return None
    folder = _folder(ds.path)
    for rel, (size, _) in ds.files.items():
        try:
            real = folder.path(rel)
            if size is not None and folder.size(real) != size:
                return None
        except (IntegrityError, OSError):
            return None
    return ds.manifest


def verify_dataset(path: str | Path) -> VerifiedDataset:
    """Check the whole folder against its manifest: it lists every file in it; every file it lists is
    inside the folder and a regular file; every shard's size, sha256 and rows match and it decodes
    within bounds; every other listed file's sha256 matches."""
    ds = open_dataset(path)
    folder = _folder(ds.path)
    shards = set()
    for name, meta in ds.manifest["splits"].items():
        schema = None
        for shard in meta["shards"]:
            shards.add(shard["path"])
            table = decode(folder.read(shard["path"], shard["bytes"], shard["sha256"]), folder.url(shard["path"]),
                           shard["rows"])
            if schema is not None and not table.schema.equals(schema, check_metadata=False):
                raise IntegrityError(f"{folder.url(shard['path'])}: its columns differ from those of the other "
                                     f"shards of split {name!r} (the shards have different columns)")
            schema = table.schema
    for rel, (_, sha256) in ds.files.items():
        if rel in shards:
            continue
        folder.path(rel)  # a plot has no checksum: inside the folder and a regular file, at least
        if sha256 is not None and folder.sha256(rel) != sha256:
            raise IntegrityError(f"{folder.url(rel)}: sha256 does not match the manifest")
    return ds


def read_split(path: str | Path, split: str = "train") -> pl.DataFrame:
    """A split as one polars DataFrame: the folder opened (:func:`open_dataset`), each of the split's
    shards checked as it is read."""
    import polars as pl  # only here: verifying a dataset needs pyarrow alone

    return pl.from_arrow(open_dataset(path).table(split))  # type: ignore[return-value]


def __getattr__(name: str) -> object:
    # The trainer loader lives in pipeline.loader; importing it here lazily keeps torch
    # out of `tinyforge verify` and every other reader that does not train.
    if name in ("ShardDataset", "ShardLoader", "collate"):
        from pipeline import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
