"""Publish records as Parquet shards with a manifest, a dataset card and a report.

The shard contract (what trainers rely on):

* ``data/<split>-NNNNN-of-MMMMM.parquet``: zstd, row groups of bounded rows,
  shards of bounded rows and bytes, columns typed by the record schema;
* a deterministic shuffle and train/validation split from the recipe's seed
  (records are first sorted by id, so upstream order never matters);
* ``manifest.json`` with per-shard rows, bytes, sha256 and token counts;
* the whole folder is assembled under a temporary name and renamed into
  place, so a half-written dataset is never visible.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from pipeline.config import Section
from pipeline.errors import BuildFailed
from pipeline.fingerprint import file_sha256
from pipeline.revision import code_revision
from pipeline.schema import RecordSchema
from pipeline.shard_format import FORMAT, FORMAT_VERSION, MANIFEST, PLOTS
from pipeline.stages import replace_dir, write_json_atomic


class PublishConfig(Section):
    shard_max_rows: int = Field(100_000, gt=0)
    shard_max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="uncompressed bytes per shard")
    row_group_rows: int = Field(1024, gt=0)
    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    compression_level: int = Field(3, ge=1, le=22)
    tokenizer: str | None = Field(None, description="also write an input_ids column, tokenized with this "
                                  "model's tokenizer: 'smollm2-135m-instruct' (shipped) or a .gguf path")
    append_eos: bool = Field(True, description="end every input_ids with the tokenizer's EOS token")

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer(cls, v: str | None) -> str | None:
        from pipeline.llm.llamacpp import SHIPPED_MODELS

        if v is not None and v not in SHIPPED_MODELS and not v.endswith(".gguf"):
            raise ValueError(f"{v!r} is neither a shipped model ({', '.join(SHIPPED_MODELS)}) nor a .gguf file")
        return v


@dataclass(frozen=True)
class Published:
    path: Path
    manifest: dict[str, Any]

    @property
    def shards(self) -> list[Path]:
        return [self.path / s["path"] for split in self.manifest["splits"].values() for s in split["shards"]]


def split_and_shuffle(table: pa.Table | pa.Array | pa.ChunkedArray, seed: int,
                      validation_fraction: float) -> dict[str, np.ndarray]:
    """The rows of each split, as indices into ``table`` (or into its ``id`` column, given alone): sorted
    by id, permuted with the seed, the validation share cut off the front. Indices, not tables: a shard
    gathers its own rows, so publishing never holds a second, shuffled copy of the corpus."""
    ids = table["id"] if isinstance(table, pa.Table) else table
    order = pc.sort_indices(ids).to_numpy()
    rows = order[np.random.default_rng(seed).permutation(len(ids))]
    n = len(ids)
    n_val = 0
    if validation_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, round(n * validation_fraction)))
    splits = {"train": rows[n_val:]}
    if n_val:
        splits["validation"] = rows[:n_val]
    return splits


def shard_bounds(rows: int, row_bytes: int, cfg: PublishConfig) -> list[tuple[int, int]]:
    """Even slices of ``rows`` rows with at most shard_max_rows rows and about shard_max_bytes bytes each,
    at ``row_bytes`` bytes a row."""
    per_shard = max(1, min(cfg.shard_max_rows, cfg.shard_max_bytes // max(1, row_bytes)))
    count = max(1, math.ceil(rows / per_shard))
    edges = np.linspace(0, rows, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


class Source:
    """The records to publish: an Arrow table in memory, or a Parquet file read a row group at a time."""

    def __init__(self, data: pa.Table | Path):
        self.data = data
        self.file = pq.ParquetFile(data) if isinstance(data, Path) else None

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows if self.file is not None else self.data.num_rows

    @property
    def schema(self) -> pa.Schema:
        return self.file.schema_arrow if self.file is not None else self.data.schema

    def row_bytes(self) -> int:
        if self.file is None:
            return self.data.nbytes // max(self.data.num_rows, 1)
        md = self.file.metadata
        return sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups)) // max(md.num_rows, 1)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.file.read(columns=[name]).column(name) if self.file is not None else self.data[name]

    def batches(self, size: int = 10_000) -> Iterator[pa.Table]:
        if self.file is None:
            yield from (pa.Table.from_batches([b], self.data.schema) for b in self.data.to_batches(size))
        else:
            yield from (pa.Table.from_batches([b], self.file.schema_arrow) for b in self.file.iter_batches(size))


def write_shards(source: Source, plan: dict[str, tuple[np.ndarray, list[tuple[int, int]]]], out: Path,
                 folders: dict[str, str], cfg: PublishConfig, token_field: str) -> dict[str, list[dict[str, Any]]]:
    """Each split's shards, ``plan[split] = (rows of the source in the split's order, shard bounds)``, written
    into ``out / folders[split]`` in one pass over the source: every row goes to a bucket file per shard with
    its position, then each bucket is put in order and written as the shard. Memory holds a batch and one
    shard, not the corpus."""
    n = source.num_rows
    buckets = out / ".buckets"
    buckets.mkdir()
    position = {}
    for split, (rows, _) in plan.items():
        where = np.full(n, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        position[split] = where
    starts = {split: np.array([a for a, _ in bounds]) for split, (_, bounds) in plan.items()}
    writers: dict[tuple[str, int], pq.ParquetWriter] = {}
    schema = source.schema.append(pa.field("__pos", pa.int64()))
    try:
        offset = 0
        for batch in source.batches():
            m = batch.num_rows
            for split in plan:
                pos = position[split][offset : offset + m]
                picked = np.flatnonzero(pos >= 0)
                shard_of = np.searchsorted(starts[split], pos[picked], side="right") - 1
                for k in np.unique(shard_of).tolist():
                    take = picked[shard_of == k]
                    part = batch.take(pa.array(take)).append_column("__pos", pa.array(pos[take]))
                    if (split, k) not in writers:
                        writers[(split, k)] = pq.ParquetWriter(buckets / f"{split}-{k}.parquet", schema)
                    writers[(split, k)].write_table(part)
            offset += m
    finally:
        for w in writers.values():
            w.close()
    shards: dict[str, list[dict[str, Any]]] = {}
    for split, (_, bounds) in plan.items():
        shards[split] = []
        (out / folders[split]).mkdir(exist_ok=True)
        for k in range(len(bounds)):
            rel = f"{folders[split]}/{split}-{k:05d}-of-{len(bounds):05d}.parquet"
            bucket = buckets / f"{split}-{k}.parquet"
            piece = pq.read_table(bucket) if bucket.is_file() else schema.empty_table()
            bucket.unlink(missing_ok=True)
            order = pc.sort_indices(piece["__pos"]).to_numpy()
            piece = piece.drop_columns(["__pos"])
            tokens = pc.sum(piece[token_field]).as_py() if token_field in piece.column_names else None
            # in order, a row group at a time: one shard and one row group in memory, not two shards
            with pq.ParquetWriter(out / rel, source.schema, compression="zstd",
                                  compression_level=cfg.compression_level) as writer:
                for a in range(0, max(len(order), 1), cfg.row_group_rows):
                    group = piece.take(pa.array(order[a : a + cfg.row_group_rows], type=pa.int64()))
                    writer.write_table(pa.Table.from_arrays(group.columns, schema=source.schema))
            shards[split].append({"path": rel, "rows": piece.num_rows, "bytes": (out / rel).stat().st_size,
                                  "sha256": file_sha256(out / rel), "num_tokens": tokens})
            del piece
    shutil.rmtree(buckets, ignore_errors=True)
    return shards


def publish_dataset(
    records: list[dict[str, Any]] | pa.Table | Path,
    rejected: pl.DataFrame | pl.LazyFrame,
    *,
    out_dir: Path,
    schema: RecordSchema,
    cfg: PublishConfig,
    seed: int,
    info: dict[str, Any],
    card: Callable[[dict[str, Any]], str],
    report: Callable[[dict[str, Any]], str],
    token_field: str = "num_tokens",
    subsets: dict[str, str] | None = None,
    figures: dict[str, bytes] | None = None,
    input_ids: list[list[int]] | pa.Array | pa.ChunkedArray | None = None,
    tokenizer: dict[str, Any] | None = None,
    configs: dict[str, tuple[RecordSchema, list[dict[str, Any]]]] | None = None,
) -> Published:
    """Write the dataset folder. ``info`` goes into the manifest as it is (build id, recipe, usage...).

    ``subsets`` maps a name to a boolean column: the train rows where it is true
    are also published as their own split (e.g. the S2L selection).
    ``figures`` are PNG files (name -> bytes) stored as ``plots/<name>.png``.
    ``rejected``: a frame, or a lazy one over the stages' files (streamed into ``rejected.parquet``).
    ``records``: dicts, an Arrow table of the schema's that :meth:`RecordSchema.to_table` made, or a
    Parquet file of such tables (read a row group at a time: a corpus larger than memory).
    ``input_ids`` (one list per record, described by ``tokenizer``) become an
    extra ``input_ids`` column after the schema's own.
    ``configs`` are other tables of the dataset, each with its own schema (a math build's ``verifier``
    samples): shards ``<name>/<name>-*.parquet``, listed under ``splits`` with ``"config": name``.
    """
    if not (records.stat().st_size and pq.ParquetFile(records).metadata.num_rows if isinstance(records, Path)
            else len(records)):
        raise BuildFailed(
            f"nothing to publish: no record survived the build ({rejected.lazy().select(pl.len()).collect().item()} rejected; "
            "see the rejected tables under the build's stages/ folder)"
        )
    # records that break the contract are refused (a table or file: by whoever made it, with schema.to_table)
    data = records if isinstance(records, (pa.Table, Path)) else schema.to_table(records)
    if input_ids is not None:
        if isinstance(data, Path):
            raise ValueError("a records file carries its own input_ids column")
        if isinstance(input_ids, list):
            input_ids = pa.array(input_ids, type=pa.list_(pa.int32()))
        data = data.append_column("input_ids", input_ids)
    source = Source(data)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    (tmp / "data").mkdir(parents=True)
    try:
        splits_meta: dict[str, Any] = {}
        parts = split_and_shuffle(source.column("id"), seed, cfg.validation_fraction)
        for name, column in (subsets or {}).items():
            chosen = parts["train"][pc.fill_null(source.column(column), False).to_numpy(zero_copy_only=False)[parts["train"]]]
            if len(chosen):
                parts[name] = chosen
        row_bytes = source.row_bytes()
        plan = {name: (rows, shard_bounds(len(rows), row_bytes, cfg)) for name, rows in parts.items()}
        # The records' splits in data/; a subset (the S2L selection) in a folder of its own, like any other
        # configuration, so that a glob over data/ (DuckDB, `load_dataset`) reads each record once.
        folders = {name: name if subsets and name in subsets else "data" for name in parts}
        written = write_shards(source, plan, tmp, folders, cfg, token_field)
        tables = {name: (schema, written[name]) for name in parts}
        for name, (config_schema, config_rows) in (configs or {}).items():
            if config_rows:  # another table keeps its own folder, so a glob over data/ still finds only records
                other = Source(config_schema.to_table(config_rows))
                plan = {name: (np.arange(other.num_rows), shard_bounds(other.num_rows, other.row_bytes(), cfg))}
                tables[name] = (config_schema, write_shards(other, plan, tmp, {name: name}, cfg, token_field)[name])
        for split, (part_schema, shards) in tables.items():
            if part_schema is not schema:  # another table: its schema ships beside the records'
                (tmp / f"{split}.schema.json").write_text(json.dumps(part_schema.document, indent=2) + "\n")
            splits_meta[split] = {
                **({"subset_of": "train", "selected_by": subsets[split]} if subsets and split in subsets else {}),
                **({"config": split, "schema": {"id": part_schema.id, "file": f"{split}.schema.json",
                                                "sha256": file_sha256(tmp / f"{split}.schema.json")}}
                   if part_schema is not schema else {}),
                "rows": sum(s["rows"] for s in shards),
                "num_tokens": sum(s["num_tokens"] or 0 for s in shards),
                "shards": shards,
            }

        if isinstance(rejected, pl.LazyFrame):  # streamed from the stages' files, never all in memory
            rejected.sink_parquet(tmp / "rejected.parquet", compression="zstd")
        else:
            rejected.write_parquet(tmp / "rejected.parquet", compression="zstd")
        if figures:
            (tmp / PLOTS).mkdir()
            for fig_name, png in figures.items():
                (tmp / PLOTS / f"{fig_name}.png").write_bytes(png)
        # the resolved document (shared fields inlined): a dataset's schema stands alone
        (tmp / "schema.json").write_text(json.dumps(schema.document, indent=2, ensure_ascii=False) + "\n")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **info,
            "schema": {"name": schema.name, "version": schema.version, "id": schema.id, "file": "schema.json",
                       "sha256": file_sha256(tmp / "schema.json")},
            "code": code_revision(),
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "splits": splits_meta,
            "rejected": {"path": "rejected.parquet", "rows": pq.ParquetFile(tmp / "rejected.parquet").metadata.num_rows,
                         "sha256": file_sha256(tmp / "rejected.parquet")},
            "row_group_rows": cfg.row_group_rows,
            "plots": {n: f"{PLOTS}/{n}.png" for n in figures or {}},
            "input_ids": tokenizer,
        }
        (tmp / "report.md").write_text(report(manifest), encoding="utf-8")
        (tmp / "README.md").write_text(card(manifest), encoding="utf-8")
        write_json_atomic(manifest, tmp / MANIFEST)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Published(out_dir, manifest)
