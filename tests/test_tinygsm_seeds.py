"""Seed problems from a user's file: GSM8K-style answers (`#### 42`) and field mappings (docs/tinygsm.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.evol.seeds import load_seed_pool
from pipeline.recipe import load_recipe
from pipeline.tinygsm.recipe import SeedsConfig
from pipeline.solving import parse_answer, shipped_example
from pipeline.tinygsm.seeds import load_seeds
from tests.conftest import write_recipe

# As in GSM8K's train split: worked reasoning with calculator annotations, the final answer after ####.
GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "A school buys 25 boxes of paper with 48 sheets in each box. How many sheets does it buy?",
     "answer": "25 * 48 = <<25*48=1200>>1200\n#### 1,200"},
    {"question": "The temperature was 3 degrees and fell by 8 degrees overnight. What is it now?",
     "answer": "3 - 8 = <<3-8=-5>>-5\n#### -5"},
    {"question": "Ali shares 15 dollars among 4 friends equally. How much does each friend get?",
     "answer": "15 / 4 = <<15/4=3.75>>3.75\n#### 3.75"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_answers_are_the_number_after_the_hashes() -> None:
    assert [parse_answer(r["answer"]) for r in GSM8K] == [72.0, 1200.0, -5.0, 3.75]
    assert parse_answer(42) == 42.0 and parse_answer("17") == 17.0 and parse_answer("2,500") == 2500.0
    assert parse_answer("no number here") is None and parse_answer(None) is None and parse_answer(True) is None


def test_a_gsm8k_seed_file_is_read_with_its_answers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", GSM8K)
    seeds = load_seeds(SeedsConfig(path=path))  # the default field names are GSM8K's
    assert [s.question for s in seeds] == [r["question"] for r in GSM8K]
    assert [s.answer for s in seeds] == [72.0, 1200.0, -5.0, 3.75]
    assert [s.id for s in seeds] == ["line-1", "line-2", "line-3", "line-4"]  # GSM8K rows have no id
    assert all(s.solution is None for s in seeds)  # no worked Python solution: the shipped one is the example
    assert [s.answer for s in load_seeds(SeedsConfig(path=path, limit=2))] == [72.0, 1200.0]

    # an Evol-Instruct seed pool over the same file: every row has an answer, so it is a math pool
    pool = load_seed_pool(path)
    assert pool.math and [s.answer for s in pool.seeds] == [72.0, 1200.0, -5.0, 3.75]


def test_seed_fields_are_mapped_by_the_recipe(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "problem": r["question"], "final": r["answer"], "code": None} for i, r in enumerate(GSM8K)]
    write_jsonl(tmp_path / "mine.jsonl", rows)
    recipe = load_recipe(write_recipe(tmp_path / "gsm.toml", """
        name = "mine"
        kind = "tinygsm"
        [generate]
        count = 2
        [seeds]
        path = "mine.jsonl"
        question_field = "problem"
        answer_field = "final"
        solution_field = "code"
    """))
    assert recipe.seeds.path == tmp_path / "mine.jsonl"  # relative to the recipe's folder
    seeds = load_seeds(recipe.seeds)
    assert [(s.id, s.answer) for s in seeds] == [("p0", 72.0), ("p1", 1200.0), ("p2", -5.0), ("p3", 3.75)]
    assert seeds[1].question == GSM8K[1]["question"] and seeds[0].solution is None
    with pytest.raises(UserError, match=r"mine.jsonl:1: no text in field 'question' \(seeds.question_field\)"):
        load_seeds(SeedsConfig(path=tmp_path / "mine.jsonl"))


def test_a_gsm8k_seed_is_what_the_model_is_asked_to_rewrite(tmp_path: Path) -> None:
    """The generation requests a build makes from GSM8K seeds: the seed's question, the shipped example."""
    from pipeline.llm.types import SamplingParams
    from pipeline.solving.config import QuestionFilterConfig
    from pipeline.tinygsm.generate import generate_problems
    from pipeline.tinygsm.prompts import plan_problem
    from tests.replay import ScriptedBackend

    seeds = load_seeds(SeedsConfig(path=write_jsonl(tmp_path / "train.jsonl", GSM8K)))
    spec = plan_problem(0, 1, seeds)
    new = "Omar sold 30 stickers in June and 12 fewer in July. How many stickers did he sell in all?"
    backend = ScriptedBackend("test", lambda call, r: [json.dumps({"question": new})] if call == 0 else ["x"] * r.n)
    params = SamplingParams(0.5, 0.95, 10, 1.0)
    records, rejected = generate_problems([spec], backend, params, params, 2, shipped_example(),
                                          QuestionFilterConfig(), structured=True)
    assert not rejected and records[0]["question"] == new and records[0]["seed_id"] == spec.seed.id
    (question_request, _), (solution_request, _) = backend.recorded
    assert spec.seed.question in question_request.messages[-1].content
    example = shipped_example()
    assert example.solution.strip() in solution_request.messages[-1].content and solution_request.n == 2
