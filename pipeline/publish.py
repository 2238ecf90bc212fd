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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import BuildFailed
from pipeline.fingerprint import file_sha256
from pipeline.recipe import PublishConfig
from pipeline.revision import code_revision
from pipeline.schema import RecordSchema
from pipeline.shard_format import FORMAT, FORMAT_VERSION, MANIFEST, PLOTS
from pipeline.stages import replace_dir, write_json_atomic


@dataclass(frozen=True)
class Published:
    path: Path
    manifest: dict[str, Any]

    @property
    def shards(self) -> list[Path]:
        return [self.path / s["path"] for split in self.manifest["splits"].values() for s in split["shards"]]


def split_and_shuffle(table: pa.Table, seed: int, validation_fraction: float) -> dict[str, np.ndarray]:
    """The rows of each split, as indices into ``table``: sorted by id, permuted with the seed, the
    validation share cut off the front. Indices, not tables: a shard takes its own rows, so publishing
    never holds a second, shuffled copy of the whole corpus."""
    order = pc.sort_indices(table, [("id", "ascending")]).to_numpy()
    rows = order[np.random.default_rng(seed).permutation(table.num_rows)]
    n = table.num_rows
    n_val = 0
    if validation_fraction > 0 and n >= 2:
        n_val = min(n - 1, max(1, round(n * validation_fraction)))
    splits = {"train": rows[n_val:]}
    if n_val:
        splits["validation"] = rows[:n_val]
    return splits


def shard_bounds(table: pa.Table, cfg: PublishConfig, rows: int | None = None) -> list[tuple[int, int]]:
    """Even slices of ``rows`` (default: all of ``table``'s) with at most shard_max_rows rows and about
    shard_max_bytes bytes each, at ``table``'s bytes per row."""
    n = table.num_rows if rows is None else rows
    row_bytes = max(1, table.nbytes // max(table.num_rows, 1))
    per_shard = max(1, min(cfg.shard_max_rows, cfg.shard_max_bytes // row_bytes))
    count = max(1, math.ceil(n / per_shard))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def publish_dataset(
    records: list[dict[str, Any]] | pa.Table,
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
    ``records``: dicts, or an Arrow table of the schema's that :meth:`RecordSchema.to_table` made.
    ``input_ids`` (one list per record, described by ``tokenizer``) become an
    extra ``input_ids`` column after the schema's own.
    ``configs`` are other tables of the dataset, each with its own schema (a math build's ``verifier``
    samples): shards ``<name>/<name>-*.parquet``, listed under ``splits`` with ``"config": name``.
    """
    if not len(records):
        raise BuildFailed(
            f"nothing to publish: no record survived the build ({rejected.lazy().select(pl.len()).collect().item()} rejected; "
            "see the rejected tables under the build's stages/ folder)"
        )
    # records that break the contract are refused (a table: by whoever made it, with schema.to_table)
    table = records if isinstance(records, pa.Table) else schema.to_table(records)
    if input_ids is not None:
        if isinstance(input_ids, list):
            input_ids = pa.array(input_ids, type=pa.list_(pa.int32()))
        table = table.append_column("input_ids", input_ids)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    (tmp / "data").mkdir(parents=True)
    try:
        splits_meta: dict[str, Any] = {}
        parts = split_and_shuffle(table, seed, cfg.validation_fraction)
        for name, column in (subsets or {}).items():
            chosen = parts["train"][pc.fill_null(table[column], False).to_numpy(zero_copy_only=False)[parts["train"]]]
            if len(chosen):
                parts[name] = chosen
        tables = {name: (schema, table, rows) for name, rows in parts.items()}
        for name, (config_schema, config_rows) in (configs or {}).items():
            if config_rows:
                other = config_schema.to_table(config_rows)
                tables[name] = (config_schema, other, np.arange(other.num_rows))
        for split, (part_schema, source, rows) in tables.items():
            bounds = shard_bounds(source, cfg, len(rows))
            # another table keeps its own folder, so a glob over data/ still finds only records
            folder = "data" if part_schema is schema else split
            (tmp / folder).mkdir(exist_ok=True)
            shards = []
            for k, (a, b) in enumerate(bounds):
                rel = f"{folder}/{split}-{k:05d}-of-{len(bounds):05d}.parquet"
                piece = source.take(pa.array(rows[a:b]))
                pq.write_table(piece, tmp / rel, compression="zstd", compression_level=cfg.compression_level,
                               row_group_size=cfg.row_group_rows)
                tokens = pc.sum(piece[token_field]).as_py() if token_field in piece.column_names else None
                shards.append({"path": rel, "rows": piece.num_rows, "bytes": (tmp / rel).stat().st_size,
                               "sha256": file_sha256(tmp / rel), "num_tokens": tokens})
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
