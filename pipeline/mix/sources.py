"""A mix's sources: published datasets, read through the loader's checks, as one table of candidates.

Every shard of a source's split is checked against its manifest (size, sha256, rows) before a row of it
is used, and the manifest's own sha256 is kept for the mix's manifest. A source's records become the
mix's columns by its kind: what a trainer reads (``text``: the kind's training text), the instruction
and response, and the scores they carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import IntegrityError, UserError
from pipeline.kinds import MixFields
from pipeline.mix.recipe import MixSource
from pipeline.registry import get_kind, kind_names


def _response_only(_: pa.Array, response: pa.Array) -> pa.Array:
    return response


def _both(instruction: pa.Array, response: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(instruction, response, "\n\n")


TRAINING_TEXT = {"response": _response_only, "both": _both}  # (instructions, responses) -> training texts


def mix_fields(kind: str) -> MixFields:
    """How a source of ``kind`` is read: what its kind declares (a mix reads datasets of any installed kind,
    found by the kind their manifest names)."""
    if kind in kind_names() and (fields := get_kind(kind).mix_fields) is not None:
        return fields
    # (only to name them: listing the readable kinds imports every installed kind's module)
    readable = [name for name in kind_names() if get_kind(name).mix_fields is not None]
    raise UserError(f"kind {kind!r}: a mix reads {', '.join(readable)} datasets")


# Scores a source's records may carry, kept when they do (null otherwise).
CARRIED = {"num_tokens": pa.int64(), "difficulty": pa.float64(), "learning_percentage": pa.float64(),
           "code_difficulty": pa.float64()}


@dataclass(frozen=True)
class Source:
    label: str
    path: str
    kind: str
    build_id: str | None
    manifest_sha256: str
    split: str
    table: pa.Table  # source_id, instruction, response, text and CARRIED, in the split's manifest order

    def describe(self) -> dict[str, Any]:
        return {"source": self.label, "path": self.path, "kind": self.kind, "build_id": self.build_id,
                "manifest_sha256": self.manifest_sha256, "split": self.split, "rows": self.table.num_rows}


def open_source(spec: MixSource) -> Source:
    """The source's split as candidates, every shard verified; one-line errors name the source."""
    from pipeline.loader import ShardDataset  # torch comes with it: only a mix build pays for that

    where = f"mix source {spec.label!r} ({spec.path})"
    try:
        ds = ShardDataset(spec.path, spec.split, shuffle=False, verify=True, rank=0, world_size=1,
                          storage_options=spec.storage_options, columns=[])
        kind = str(ds.manifest.get("kind"))
        fields = mix_fields(kind)
        names = set(ds.schema.names)
        need = ["id", fields.instruction, fields.response, *([fields.text_column] if fields.text_column else [])]
        if missing := [c for c in need if c not in names]:
            raise UserError(f"incompatible columns: a {kind} dataset with no {', '.join(missing)}")
        ds.columns = [*need, *(c for c in CARRIED if c in names)]
        table = ds.read_table()
    except (UserError, IntegrityError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except FileNotFoundError as exc:
        raise IntegrityError(f"{where}: not found ({exc})") from None
    return Source(spec.label, spec.path, kind, ds.manifest.get("build_id"), ds.manifest_sha256, spec.split,
                  _candidates(table, fields, where))


def _candidates(table: pa.Table, fields: MixFields, where: str) -> pa.Table:
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"source_id": table["id"]}
    for name, column in (("instruction", fields.instruction), ("response", fields.response)):
        values = table[column]
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            raise UserError(f"{where}: incompatible columns: {column!r} is {values.type}, not text")
        columns[name] = pc.cast(values, pa.string())
    columns["text"] = (pc.cast(table[fields.text_column], pa.string()) if fields.text_column
                       else TRAINING_TEXT[fields.text](columns["instruction"], columns["response"]))
    for name, kind in CARRIED.items():
        if name in table.column_names:
            try:
                columns[name] = pc.cast(table[name], kind)
            except pa.ArrowInvalid:
                raise UserError(f"{where}: incompatible columns: {name!r} is {table[name].type}, not a number") from None
        else:
            columns[name] = pa.nulls(table.num_rows, kind)
    return pa.table(columns)


def seeded_order(rows: int, seed: int, index: int) -> np.ndarray:
    """The order a source's rows are taken in: drawn from the mix's seed and the source's place in the
    recipe, so adding a source after it changes nothing of its sample."""
    return np.random.default_rng([seed, 0x313C, index]).permutation(rows)
