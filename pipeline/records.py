"""Record identity and the shape of rejections, shared by every corpus kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

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
    """The rows of an Arrow table, or of a Parquet file, as dicts made on demand ``chunk`` rows at a time
    (a file is read a row group at a time): code written for a list of records (a report section) reads
    a million of them without a million dicts, or the whole table, in memory. ``columns``: the fields
    the dicts have (default: all)."""

    def __init__(self, data: pa.Table | Path, chunk: int = 10_000, columns: Sequence[str] | None = None):
        self.chunk, self.columns = chunk, list(columns) if columns is not None else None
        self.table = data.select(self.columns) if isinstance(data, pa.Table) and columns is not None else data
        self.file = pq.ParquetFile(data) if isinstance(data, Path) else None
        if self.file is not None:
            md = self.file.metadata
            self._starts = np.cumsum([0] + [md.row_group(g).num_rows for g in range(md.num_row_groups)])

    def __len__(self) -> int:
        return self.file.metadata.num_rows if self.file is not None else self.table.num_rows

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        if self.file is None:
            return self.table.slice(i, 1).to_pylist()[0]
        group = int(np.searchsorted(self._starts, i, side="right")) - 1
        rows = self.file.read_row_group(group, columns=self.columns)
        return rows.slice(i - int(self._starts[group]), 1).to_pylist()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.file is not None:
            for batch in self.file.iter_batches(self.chunk, columns=self.columns):
                yield from batch.to_pylist()
            return
        for start in range(0, self.table.num_rows, self.chunk):
            yield from self.table.slice(start, self.chunk).to_pylist()

    def arrow_column(self, name: str) -> pa.ChunkedArray:
        return self.file.read(columns=[name]).column(name) if self.file is not None else self.table.column(name)

    def column(self, name: str) -> list[Any]:
        """One field of every record, as a list (cheaper than iterating the records for it)."""
        return self.arrow_column(name).to_pylist()

    def column_view(self, name: str) -> ColumnView:
        """One field of every record, made into Python values a slice at a time."""
        return ColumnView(self.arrow_column(name))


class ColumnView(Sequence[Any]):
    """One column (a polars Series or an Arrow array) as a sequence whose values become Python objects a
    slice at a time: a million texts passed to code that slices them (MinHash, in chunks) are never a
    million Python strings at once."""

    def __init__(self, column: pl.Series | pa.Array | pa.ChunkedArray, chunk: int = 10_000):
        self.column, self.chunk = column, chunk

    def __len__(self) -> int:
        return len(self.column)

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return [self[j] for j in range(start, stop, step)]
            return self._values(start, max(0, stop - start))
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._values(i % len(self), 1)[0]

    def _values(self, start: int, n: int) -> list[Any]:
        part = self.column.slice(start, n)
        return part.to_list() if isinstance(part, pl.Series) else part.to_pylist()

    def __iter__(self) -> Iterator[Any]:
        for start in range(0, len(self), self.chunk):
            yield from self._values(start, self.chunk)


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
