"""Read a field out of model output that was asked to be JSON, whether or not it is.

A backend with structured output (a llama.cpp grammar, vLLM's
``StructuredOutputsParams``, a server's ``response_format``) returns valid
JSON, unless it ran out of tokens mid-string. A backend without it returns
whatever the model wrote: JSON in a code fence, JSON with prose around it,
half a JSON object, or plain text. :func:`json_field` reads the field from all
of these, and says ``None`` when there is no such field, so the caller can
fall back to its plain-text parser.
"""

from __future__ import annotations

import json
import re
from typing import Any


def object_schema(**fields: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema for an object with exactly these required fields."""
    return {"type": "object", "properties": fields, "required": list(fields), "additionalProperties": False}


def objects(text: str):
    """Every JSON object that parses, starting at each ``{`` in the text."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def json_field(text: str, field: str) -> str | None:
    """The string value of ``field`` in the first JSON object that has it; a cut-off string is kept.

    ``None`` when the text holds no such field at all.
    """
    for obj in objects(text):
        value = obj.get(field)
        if isinstance(value, str):
            return value
    # Truncated output ({"question": "Tom has 3 app...) or a stray quote: read the string up to where it ends.
    m = re.search(rf'"{re.escape(field)}"\s*:\s*"((?:[^"\\]|\\.)*)', text, re.S)
    if m is None:
        return None
    raw = m.group(1)
    for cut in (len(raw), len(raw) - 1, len(raw) - 5):  # an escape cut in half (\u00e) cannot be decoded
        try:
            return json.loads(f'"{raw[:max(cut, 0)]}"')
        except json.JSONDecodeError:
            continue
    return raw
