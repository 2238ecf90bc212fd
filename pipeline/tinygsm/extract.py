"""Pull the problem statement out of the model's free-form rewrite."""

from __future__ import annotations

import re

from pipeline.structured import json_field

_LABEL = re.compile(r"^\s*(?:\*\*|#+\s*)?(?:new\s+)?(?:math\s+)?(?:word\s+)?(?:problem|question)\s*\d*\s*(?:\*\*)?\s*[:.-]\s*",
                    re.IGNORECASE)


def extract_question(text: str) -> str:
    """The problem statement: from ``{"question": ...}`` if present; labels dropped, cut after its first question."""
    if (value := json_field(text, "question")) is not None:
        text = value
    text = text.strip().strip('"').strip()
    text = _LABEL.sub("", text, count=1)
    if (q := text.find("?")) != -1:
        text = text[: q + 1]
    return " ".join(text.split()).strip('"* ').strip()
