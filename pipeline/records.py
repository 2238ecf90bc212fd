"""Record identity and the shape of rejections, shared by every corpus kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import UserError
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


def rejection(record: dict[str, Any], stage: str, reason: str, detail: str, text_field: str) -> dict[str, Any]:
    """A rejected record: why (``stage``, ``reason``, ``detail``), its main text (``record[text_field]``) and
    the whole record as JSON, so nothing a stage dropped is lost."""
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


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; a bad line is a UserError naming it."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: not a JSON object")
            yield lineno, row
