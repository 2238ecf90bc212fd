"""Seed problems: the shipped pool (data/seeds/) or a user's JSONL file with a field mapping."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import UserError
from pipeline.paths import SEEDS_FILE
from pipeline.recipe import SeedsConfig
from pipeline.records import iter_jsonl

_GSM8K_ANSWER = re.compile(r"####\s*([-+]?[\d,]*\.?\d+)")


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    question: str
    answer: float | None
    solution: str | None  # a worked Python solution, when the seed file has one


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


def load_seeds(cfg: SeedsConfig) -> list[Seed]:
    seeds = []
    for lineno, row in iter_jsonl(cfg.path):
        question = row.get(cfg.question_field)
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{cfg.path}:{lineno}: no text in field {cfg.question_field!r} (seeds.question_field)")
        solution = row.get(cfg.solution_field) if cfg.solution_field else None
        answer = parse_answer(row.get(cfg.answer_field)) if cfg.answer_field else None
        seeds.append(Seed(str(row.get("id", f"line-{lineno}")), question.strip(), answer,
                          solution if isinstance(solution, str) and solution.strip() else None))
        if cfg.limit and len(seeds) >= cfg.limit:
            break
    if not seeds:
        raise UserError(f"{cfg.path}: no seed problems")
    return seeds


def format_example() -> Seed:
    """The shipped seed whose solution shows the model the expected format."""
    return load_seeds(SeedsConfig(path=SEEDS_FILE, limit=1))[0]
