"""Shared record fields are defined once (schemas/record.v1.json) and every kind's schema refers to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pipeline.errors import SchemaError
from pipeline.kinds import get_kind
from pipeline.paths import SCHEMAS_DIR
from pipeline.schema import load_schema
from tests.conftest import REPO
from tests.test_publish import publish, story_record

KINDS = ("tinystories", "tinygsm", "evol_instruct")
SHARED = json.loads((SCHEMAS_DIR / "record.v1.json").read_text())["$defs"]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_takes_the_shared_fields_from_record_v1(kind: str) -> None:
    schema = load_schema(get_kind(kind).schema_id)
    raw = json.loads(schema.path.read_text())
    used = {r.rpartition("/")[2] for r in _refs(raw) if r.startswith("record.v1.json#")}
    assert used == set(SHARED), f"{schema.path.name} spells out a shared field instead of referring to it"
    others = {r.partition("#")[0] for r in _refs(raw)} - {"record.v1.json"}
    assert others <= {"code.v1.json"}, others  # the columns of records that carry a program
    assert not _refs(schema.document)  # loaded, every reference is inlined
    undocumented = [k for k, v in schema.document["properties"].items() if not v.get("description")]
    assert not undocumented, f"the dataset card takes each field's description from the schema: {undocumented}"
    for name, prop in raw["properties"].items():
        if "$ref" in prop:  # the kind may only annotate a shared field, never change its type
            assert set(prop) <= {"$ref", "description"}, name


def test_the_arrow_schemas_are_what_they_were_before_the_refs() -> None:
    """The shards' column types did not move when the shared fields moved: tests/fixtures/arrow_schemas.txt
    was written from the schemas as they were before (each field spelled out in every kind's file)."""
    current = "\n".join(f"# {s.id}\n{s.arrow.to_string(show_schema_metadata=True)}\n"
                        for s in map(load_schema, ("tinystories.v2", "tinygsm.v2", "evol_instruct.v1")))
    assert current == (REPO / "tests" / "fixtures" / "arrow_schemas.txt").read_text()


def test_a_published_schema_stands_alone(tmp_path: Path) -> None:
    out = publish(tmp_path, n=5)
    doc = json.loads((out / "schema.json").read_text())
    assert not _refs(doc)
    validator = Draft202012Validator(doc)  # no registry: nothing outside the file is needed
    assert not list(validator.iter_errors(story_record(1)))
    assert list(validator.iter_errors(story_record(1) | {"id": "not-a-hash"}))


def test_a_broken_reference_is_one_line(tmp_path: Path) -> None:
    base = {"$schema": "https://json-schema.org/draft/2020-12/schema", "x-schema-name": "x", "x-schema-version": 1,
            "type": "object", "properties": {}}
    for ref, message in (("record.v1.json#/$defs/nope", "defines no 'nope'"),
                         ("missing.json#/$defs/id", "no file missing.json"),
                         ("#/$defs/local", "unsupported")):
        path = tmp_path / "x.v1.json"
        path.write_text(json.dumps(base | {"properties": {"a": {"$ref": ref}}}))
        with pytest.raises(SchemaError, match=message) as err:
            load_schema(path)
        assert "\n" not in str(err.value)
    with pytest.raises(SchemaError, match="not a record schema"):
        load_schema("record.v1")


def test_a_kind_outside_tinyforge_can_refer_to_the_shared_fields(tmp_path: Path) -> None:
    path = tmp_path / "poems.v1.json"
    path.write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "x-schema-name": "poems", "x-schema-version": 1,
        "type": "object", "required": ["id"],
        "properties": {"id": {"$ref": "record.v1.json#/$defs/record_id"}, "poem": {"type": "string"}}}))
    schema = load_schema(path)
    assert schema.document["properties"]["id"] == SHARED["record_id"]
    with pytest.raises(SchemaError, match="does not match"):
        schema.validate([{"id": "x"}])


def _mutations(record: dict) -> list[dict]:
    """Records one change away from ``record``: a field dropped, set to null, given another type."""
    out = []
    for key, value in record.items():
        out.append({k: v for k, v in record.items() if k != key})
        out.append({**record, key: None})
        out.append({**record, key: 1.5 if isinstance(value, str) else "x"})
        if isinstance(value, dict):
            for sub in value:
                out.append({**record, key: {**value, sub: "x" if not isinstance(value[sub], str) else 7}})
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_the_compiled_validator_agrees_with_the_reference_one(kind: str) -> None:
    """Publish validates with fastjsonschema for speed: on each shipped golden row and every one-field
    change of it, it must accept exactly what jsonschema's Draft 2020-12 validator accepts."""
    from pipeline.schema import _compiled
    import fastjsonschema

    schema = load_schema(get_kind(kind).schema_id)
    reference = Draft202012Validator(schema.document)
    fast = _compiled(json.dumps(schema.document, sort_keys=True))
    lines = (REPO / "tests" / "fixtures" / "golden" / f"{kind}.rows.jsonl").read_text().splitlines()[:3]
    rows = [{k: json.loads(line).get(k) for k in schema.fields} for line in lines]  # less input_ids; nulls back
    checked = rejected = 0
    for row in rows:
        for candidate in [row, *_mutations(row)]:
            try:
                fast(candidate)
                fast_ok = True
            except fastjsonschema.JsonSchemaValueException:
                fast_ok = False
            assert fast_ok == reference.is_valid(candidate), (kind, candidate)
            checked += 1
            rejected += not fast_ok
    assert checked > 100 and 0 < rejected < checked
