"""What earlier builds published, so a new build never publishes it again.

Under ``<output_root>/index/<kind>/minhash-p<num_perm>-n<ngram>/`` there is one
Parquet file per build name: the ids, build id and MinHash signatures of the
records that build last published. A build checks its records against every
other name's file; its own file is replaced each time it publishes, so
re-running a changed recipe supersedes its earlier output instead of
deduplicating against it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup import matches_against
from pipeline.errors import UserError
from pipeline.fingerprint import digest
from pipeline.minhash import MinHasher


@dataclass(frozen=True)
class PublishedMatch:
    index: int  # row of the new record
    id: str  # id of the published record it duplicates
    build_id: str
    similarity: float


def _content(path: Path) -> bytes | None:
    """The content digest an index file was written with; None when it cannot be read (it is rewritten)."""
    try:
        return (pq.read_schema(path).metadata or {}).get(b"tinyforge.content")
    except (OSError, pa.ArrowException):
        return None


class PublishedIndex:
    def __init__(self, output_root: str | Path, kind: str, num_perm: int, ngram: int):
        self.num_perm, self.ngram = num_perm, ngram
        self.dir = Path(output_root) / "index" / kind / f"minhash-p{num_perm}-n{ngram}"

    def _files(self, exclude: str | None) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.glob("*.parquet") if p.stem != exclude)

    def fingerprint(self, exclude: str | None) -> str:
        """Changes whenever another build publishes: a dedup stage that used the index must run again."""
        return digest([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in self._files(exclude)])

    def load(self, exclude: str | None) -> pl.DataFrame:
        files = self._files(exclude)
        if not files:
            return pl.DataFrame(schema={"id": pl.String, "build_id": pl.String,
                                        "signature": pl.Array(pl.UInt32, self.num_perm)})
        return pl.concat([self._read(f) for f in files])

    def _read(self, path: Path) -> pl.DataFrame:
        try:
            return pl.read_parquet(path, columns=["id", "build_id", "signature"])
        except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
            raise UserError(f"{path}: a damaged entry of the cross-build index ({str(exc).splitlines()[0]}); "
                            f"remove it: build {path.stem!r} registers again the next time it publishes") from None

    def find(self, texts: Sequence[str], threshold: float, exclude: str | None) -> list[PublishedMatch]:
        published = self.load(exclude)
        if published.height == 0 or not texts:
            return []
        sig = MinHasher(self.num_perm, self.ngram).signatures(texts)
        ref = published["signature"].to_numpy()
        ids, builds = published["id"].to_list(), published["build_id"].to_list()
        return [PublishedMatch(i, ids[j], builds[j], s) for i, j, s in matches_against(sig, ref, threshold)]

    def register(self, name: str, build_id: str, ids: Sequence[str], texts: Sequence[str]) -> Path:
        """Record (atomically) what build ``name`` now publishes, replacing what it published before.
        ``texts`` may be a lazy column (it is sliced, never copied whole)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        sig = np.ascontiguousarray(MinHasher(self.num_perm, self.ngram).signatures(texts))
        ids = list(ids)
        content = digest([build_id, ids, hashlib.sha256(memoryview(sig)).hexdigest()])
        final = self.dir / f"{name}.parquet"
        if final.is_file() and _content(final) == content.encode():
            return final  # unchanged: leave its mtime alone, so other builds' fingerprints hold
        tmp = self.dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        table = pa.table({"id": pa.array(ids, pa.string()), "build_id": pa.array([build_id] * len(ids), pa.string()),
                          "signature": pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), self.num_perm)})
        pq.write_table(table.replace_schema_metadata({"tinyforge.content": content}), tmp, compression="zstd")
        os.replace(tmp, final)
        return final

    def has(self, name: str) -> bool:
        """Whether build ``name`` has an entry that can be read (its footer, at least)."""
        return _content(self.dir / f"{name}.parquet") is not None

    def size(self, exclude: str | None = None) -> int:
        return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in self._files(exclude))


