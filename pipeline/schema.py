"""Record schemas: the JSON Schema files in ``schemas/`` are the shard contract.

The Arrow schema of the shards is derived from the JSON Schema, so the two
cannot drift apart: a property's JSON type decides its column type, and a
type list containing ``"null"`` makes the column nullable. An ``x-arrow``
keyword overrides the mapping where JSON has no finer type (``float32``).

Fields every kind shares are defined once, in ``schemas/record.v1.json``
(``$defs``); a kind's schema refers to them (``{"$ref":
"record.v1.json#/$defs/sampling"}``, with its own ``description`` beside the
reference where it says more). :func:`load_schema` inlines every reference,
so the document a dataset ships as ``schema.json`` stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import pyarrow as pa
from jsonschema import Draft202012Validator

from pipeline.errors import SchemaError
from pipeline.paths import SCHEMAS_DIR

_SCALARS = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
_OVERRIDES = {"float32": pa.float32(), "int32": pa.int32(), "int16": pa.int16(), "uint16": pa.uint16()}


@dataclass(frozen=True)
class RecordSchema:
    name: str
    version: int
    document: dict[str, Any]
    path: Path

    @property
    def id(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def fields(self) -> list[str]:
        return list(self.document["properties"])

    @property
    def arrow(self) -> pa.Schema:
        required = set(self.document.get("required", ()))
        return pa.schema(
            [_arrow_field(k, v, k in required) for k, v in self.document["properties"].items()],
            metadata={"tinyforge.schema": self.id},
        )

    def validate(self, records: Iterable[dict[str, Any]]) -> None:
        """Raise SchemaError naming the first record that breaks the contract.

        Every record is checked by a validator compiled from the schema (fastjsonschema: about 40 times
        faster than interpreting it, which at a million records is minutes); the one that fails is checked
        again by jsonschema's reference validator for the message."""
        document = json.dumps(self.document, sort_keys=True)
        fast = _compiled(document)
        for i, record in enumerate(records):
            try:
                fast(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                error = next(iter(_validator(document).iter_errors(record)), None)
                where = ".".join(str(p) for p in error.absolute_path) or "(record)" if error else exc.name
                raise SchemaError(f"record {i} (id {record.get('id')!r}) does not match {self.id}: {where}: "
                                  f"{error.message if error else exc.message}") from None

    def to_table(self, records: list[dict[str, Any]]) -> pa.Table:
        self.validate(records)
        return pa.Table.from_pylist(records, schema=self.arrow)


def _types(prop: dict[str, Any]) -> tuple[str, bool]:
    t = prop.get("type", "string")
    if isinstance(t, list):
        rest = [x for x in t if x != "null"]
        return rest[0], "null" in t
    return t, False


def _arrow_type(prop: dict[str, Any]) -> pa.DataType:
    if "x-arrow" in prop:
        return _OVERRIDES[prop["x-arrow"]]
    t, _ = _types(prop)
    if t == "array":
        return pa.list_(_arrow_type(prop.get("items", {})))
    if t == "object":
        req = set(prop.get("required", ()))
        return pa.struct([_arrow_field(k, v, k in req) for k, v in prop.get("properties", {}).items()])
    return _SCALARS[t]


def _arrow_field(name: str, prop: dict[str, Any], required: bool) -> pa.Field:
    _, nullable = _types(prop)
    return pa.field(name, _arrow_type(prop), nullable=nullable or not required)


@cache
def _validator(document: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(document))


@cache
def _compiled(document: str) -> Callable[[Any], Any]:
    # fastjsonschema knows drafts 4-7; tinyforge's schemas use only keywords those share with 2020-12
    # (type, properties, required, items, enum, minimum, pattern, ...), and test_schema checks both agree.
    doc = {k: v for k, v in json.loads(document).items() if k != "$schema"}
    return fastjsonschema.compile(doc, use_default=False)


def _resolve(node: Any, base: Path, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``{"$ref": "<file>#/$defs/<name>", ...}`` replaced by the definition it names (the
    reference's own keywords, a description say, win). A file is looked up beside ``base``, then in
    ``schemas/``; only references into another file's ``$defs`` are used by tinyforge's schemas."""
    if isinstance(node, list):
        return [_resolve(v, base, seen) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {k: _resolve(v, base, seen) for k, v in node.items()}
    ref = node["$ref"]
    file, _, pointer = ref.partition("#")
    if not file or not pointer.startswith("/$defs/") or ref in seen:
        raise SchemaError(f"{base}: unsupported or circular $ref {ref!r} (use \"<file>#/$defs/<name>\")")
    path = next((d / file for d in (base.parent, SCHEMAS_DIR) if (d / file).is_file()), None)
    if path is None:
        raise SchemaError(f"{base}: $ref {ref!r}: no file {file} beside it or in {SCHEMAS_DIR}")
    defs = json.loads(path.read_text()).get("$defs", {})
    name = pointer.removeprefix("/$defs/")
    if name not in defs:
        raise SchemaError(f"{base}: $ref {ref!r}: {path.name} defines no {name!r}")
    target = _resolve(defs[name], path, (*seen, ref))
    return {**target, **{k: _resolve(v, base, seen) for k, v in node.items() if k != "$ref"}}


def schema_ids() -> list[str]:
    """The record schemas tinyforge ships (``tinygsm.v3``, ...); ``record.v1`` only holds shared fields."""
    return sorted(p.stem for p in SCHEMAS_DIR.glob("*.json") if "x-schema-name" in json.loads(p.read_text()))


def load_schema(schema_id: str | Path) -> RecordSchema:
    """``load_schema("tinystories.v1")`` reads ``schemas/tinystories.v1.json``; a path reads that file
    (a kind defined outside tinyforge ships its own schema)."""
    path = Path(schema_id) if isinstance(schema_id, Path) else SCHEMAS_DIR / f"{schema_id}.json"
    if not path.is_file():
        raise SchemaError(f"no schema {schema_id!r} in {SCHEMAS_DIR}" if not isinstance(schema_id, Path)
                          else f"{path}: no such schema file")
    doc = _resolve(json.loads(path.read_text()), path)
    Draft202012Validator.check_schema(doc)
    if "x-schema-name" not in doc:
        raise SchemaError(f"{path}: not a record schema (no x-schema-name; record.v1 holds shared fields only)")
    return RecordSchema(doc["x-schema-name"], int(doc["x-schema-version"]), doc, path)
