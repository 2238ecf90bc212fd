"""Seed problems: the shipped pool (data/seeds/) or a user's JSONL file with a field mapping."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UserError
from pipeline.tinygsm.recipe import SeedsConfig
from pipeline.records import iter_jsonl
from pipeline.solving.answers import parse_answer


@dataclass(frozen=True, slots=True)
class Seed:
    id: str
    question: str
    answer: float | None
    solution: str | None  # a worked Python solution, when the seed file has one


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
