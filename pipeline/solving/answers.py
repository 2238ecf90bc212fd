"""Numbers as answers: reading a gold answer, and when two answers are the same."""

from __future__ import annotations

import math
import re

PLACES = 6  # answers equal to 6 decimal places are the same answer
_GSM8K_ANSWER = re.compile(r"####\s*([-+]?[\d,]*\.?\d+)")


def parse_answer(raw: object) -> float | None:
    """A number, a numeric string, or GSM8K's "reasoning ... #### 42"."""
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    text = str(raw)
    m = _GSM8K_ANSWER.search(text)
    candidate = m.group(1) if m else text.strip()
    try:
        return float(candidate.replace(",", ""))
    except ValueError:
        return None


def answer_key(value: float) -> float:
    """What answers are compared by (rounded to ``PLACES`` decimals)."""
    return round(value, PLACES)


def same_answer(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and answer_key(a) == answer_key(b)
