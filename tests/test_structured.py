"""Reading fields from output that was asked to be JSON, including real SmolLM2-135M output."""

from __future__ import annotations

import pytest

from pipeline.structured import json_field, object_schema
from pipeline.tinygsm.extract import extract_question


@pytest.mark.parametrize(("text", "expected"), [
    ('{"question": "Tom has 3 apples. How many?"}', "Tom has 3 apples. How many?"),
    ('Sure!\n```json\n{"question": "A b?"}\n```\nHope it helps.', "A b?"),  # fenced, with prose
    ('{"answer": 3}\n{"question": "second object"}', "second object"),  # the first object lacks the field
    ('{"question": "Tom has 3 app', "Tom has 3 app"),  # cut off by max_tokens
    ('{"question": "caf\\u00e9 is \\"open\\""}', 'café is "open"'),  # escapes decoded
    ('{"question": "half an escape \\u00e', "half an escape "),
    ("just prose, no JSON at all", None),
    ('{"question": 42}', None),  # not a string
])
def test_json_field(text: str, expected: str | None) -> None:
    assert json_field(text, "question") == expected


def test_object_schema_requires_every_field() -> None:
    schema = object_schema(question={"type": "string"}, answer={"type": "number"})
    assert schema["required"] == ["question", "answer"] and schema["additionalProperties"] is False


def test_extract_question_reads_json_and_falls_back_to_text() -> None:
    as_json = '{"question": "Problem: Ana has 4 pens and buys 3 more. How many pens does she have? Explain."}'
    as_text = "Problem: Ana has 4 pens and buys 3 more. How many pens does she have? Explain."
    expected = "Ana has 4 pens and buys 3 more. How many pens does she have?"
    assert extract_question(as_json) == extract_question(as_text) == expected
