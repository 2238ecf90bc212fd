"""Reading published datasets, checksums first.

The reader's side of the shard contract: it imports the format from
``pipeline.shard_format`` and nothing of the writer (``pipeline.publish``,
recipes). polars is imported by ``read_split`` alone, and the torch loader
(``ShardDataset``, ``ShardLoader``, ``collate``, in ``pipeline.loader``) only
when one of them is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from pipeline.errors import IntegrityError
from pipeline.fingerprint import file_sha256
from pipeline.shard_format import MANIFEST, read_manifest

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class VerifiedDataset:
    path: Path
    manifest: dict[str, Any]

    @property
    def splits(self) -> list[str]:
        """The splits that partition the records (not subsets such as the S2L selection, nor other tables
        such as a math build's ``verifier`` configuration)."""
        return [k for k, v in self.manifest["splits"].items() if not v.get("subset_of") and not v.get("config")]

    def files(self, split: str) -> list[Path]:
        try:
            return [self.path / s["path"] for s in self.manifest["splits"][split]["shards"]]
        except KeyError:
            raise IntegrityError(f"{self.path}: no split {split!r} (has {', '.join(self.manifest['splits'])})") from None


def load_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    return read_manifest(path.read_bytes, str(path))


def verify_dataset(path: str | Path) -> VerifiedDataset:
    """Check every shard's size, sha256 and row count against the manifest."""
    root = Path(path)
    if root.name == MANIFEST:
        root = root.parent
    manifest = load_manifest(root)
    for split, meta in manifest["splits"].items():
        for shard in meta["shards"]:
            f = root / shard["path"]
            if not f.is_file():
                raise IntegrityError(f"{f}: shard listed in the manifest is missing")
            if f.stat().st_size != shard["bytes"]:
                raise IntegrityError(f"{f}: {f.stat().st_size} bytes, manifest says {shard['bytes']}")
            if file_sha256(f) != shard["sha256"]:
                raise IntegrityError(f"{f}: sha256 does not match the manifest")
            if pq.ParquetFile(f).metadata.num_rows != shard["rows"]:
                raise IntegrityError(f"{f}: row count does not match the manifest")
    return VerifiedDataset(root, manifest)


def read_split(path: str | Path, split: str = "train") -> pl.DataFrame:
    """A verified split as one polars DataFrame."""
    import polars as pl  # only here: verifying a dataset needs pyarrow alone

    ds = verify_dataset(path)
    return pl.read_parquet(ds.files(split))


def __getattr__(name: str) -> object:
    # The trainer loader lives in pipeline.loader; importing it here lazily keeps torch
    # out of `tinyforge verify` and every other reader that does not train.
    if name in ("ShardDataset", "ShardLoader", "collate"):
        from pipeline import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
