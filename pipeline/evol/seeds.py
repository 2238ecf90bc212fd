"""The seed pool of an evolution: the shipped instructions, a user's JSONL file, or an earlier build.

A seed is one instruction with an id (its root in every lineage) and, for
math problems, the answer it had where known. A folder is read as a
published tinyforge dataset: its checksums are verified first, then every
split except derived subsets (``s2l``) is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import UserError
from pipeline.records import iter_jsonl, make_id
from pipeline.solving import parse_answer

# The field that holds the instruction in each kind of source, when the recipe does not name one.
_FIELDS = ("instruction", "question", "prompt")


@dataclass(frozen=True, slots=True)
class SeedInstruction:
    id: str
    instruction: str
    answer: float | None = None


@dataclass(frozen=True)
class SeedPool:
    seeds: list[SeedInstruction]
    math: bool  # the pool is math problems: evolutions must stay solvable
    source: str  # "jsonl" | the dataset kind it came from


def _rows_from_dataset(path: Path) -> tuple[list[dict[str, Any]], str]:
    from pipeline.shards import verify_dataset

    ds = verify_dataset(path)
    subsets = {k for k, v in ds.manifest["splits"].items() if v.get("subset_of")}
    tables = [pl.from_arrow(ds.table(s)) for s in ds.splits if s not in subsets]
    rows = pl.concat(tables, how="diagonal_relaxed").sort("id").to_dicts()
    return rows, str(ds.manifest.get("kind", "dataset"))


def _rows_from_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row | {"_line": lineno} for lineno, row in iter_jsonl(path)]


def load_seed_pool(path: Path, field: str | None = None, math: bool | None = None,
                   limit: int | None = None) -> SeedPool:
    """Read seeds; ``math=None`` decides from the source (a tinygsm dataset, or rows with an answer)."""
    path = Path(path)
    if path.is_dir():
        rows, source = _rows_from_dataset(path)
    elif path.is_file():
        rows, source = _rows_from_jsonl(path), "jsonl"
    else:
        raise UserError(f"{path}: no such seed file or dataset folder (seeds.path)")
    if not rows:
        raise UserError(f"{path}: no seed instructions")
    key = field or next((f for f in _FIELDS if f in rows[0]), None)
    if key is None:
        raise UserError(f"{path}: no {' / '.join(_FIELDS)} field in the first record; name one with seeds.field")
    seeds, seen = [], set()
    for i, row in enumerate(rows):
        text = row.get(key)
        where = f"{path}:{row['_line']}" if "_line" in row else f"{path} record {i}"
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{where}: no text in field {key!r} (seeds.field)")
        seed_id = str(row.get("id") or make_id(text))
        if seed_id in seen:
            continue
        seen.add(seed_id)
        seeds.append(SeedInstruction(seed_id, text.strip(), parse_answer(row.get("answer"))))
        if limit and len(seeds) >= limit:
            break
    if math is None:
        math = all(s.answer is not None for s in seeds)  # (a math dataset's records all carry one)
    return SeedPool(seeds, math, source)
