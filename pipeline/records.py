"""Record identity and the shape of rejections, shared by every corpus kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import polars as pl

from pipeline.text import normalize

REJECTED_SCHEMA = {
    "id": pl.String,
    "stage": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "text": pl.String,
    "record_json": pl.String,  # the whole record as it was when rejected
}


def make_id(text: str) -> str:
    """Content hash of a record's main text (normalised), 16 hex digits."""
    return hashlib.sha256(normalize(text).encode()).hexdigest()[:16]


def rejection(record: dict[str, Any], stage: str, reason: str, detail: str = "", text_field: str = "story") -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "stage": stage,
        "reason": reason,
        "detail": detail,
        "text": record.get(text_field),
        "record_json": json.dumps(record, ensure_ascii=False, default=str),
    }


def rejected_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=REJECTED_SCHEMA)
