"""Record identity and the shape of rejections, shared by every corpus kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import polars as pl
import pyarrow as pa

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


class RecordView(Sequence[dict[str, Any]]):
    """The rows of an Arrow table as dicts, made on demand ``chunk`` rows at a time: code written for a list
    of records (a report section) reads a million of them without a million dicts alive at once."""

    def __init__(self, table: pa.Table, chunk: int = 10_000):
        self.table, self.chunk = table, chunk

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self.table.slice(i % len(self), 1).to_pylist()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, self.table.num_rows, self.chunk):
            yield from self.table.slice(start, self.chunk).to_pylist()

    def column(self, name: str) -> list[Any]:
        """One field of every record, as a list (cheaper than iterating the records for it)."""
        return self.table.column(name).to_pylist()


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
