"""Majority-agreement verification, run through the real sandbox."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.solving.config import QuestionFilterConfig
from pipeline.sandbox import RunResult, Sandbox
from pipeline.solving import check_question
from pipeline.solving.verify import Rule, judge
from pipeline.tinygsm.verify import verify_problems

Q = "Maya buys 3 notebooks for $4 each and 2 pens for $1.25 each. How much does she spend?"
RIGHT = "def simple_math_problem():\n    notebooks = 3 * 4\n    pens = 2 * 1.25\n    return notebooks + pens\n"
# RIGHT again, as a sampler writes the same program twice: other names, a docstring, comments, spacing
RIGHT_RENAMED = ('def simple_math_problem() -> float:\n    """Maya\'s shopping."""\n    cost_books = 3*4  # notebooks\n'
                 "\n    cost_pens = 2*1.25\n    return cost_books + cost_pens\n")
RIGHT_OTHER = "def simple_math_problem():\n    return 3 * 4 + 2 * 1.25\n"  # the same answer by another program
WRONG = "def simple_math_problem():\n    return 3 * 4 + 2\n"
CRASH = "def simple_math_problem():\n    return 1 / 0\n"
TEXT = "def simple_math_problem():\n    return 'fourteen and a half'\n"
RANDOM = "def simple_math_problem():\n    import random\n    return random.random()\n"


def ok(v) -> RunResult:
    return RunResult("ok", value=v)


def test_judge_counts_failed_samples_against_agreement() -> None:
    v = judge([ok(14.5), ok(14.5), RunResult("error", error="ZeroDivisionError"), None], 0.5)
    assert v.reason is None and v.answer == 14.5 and v.agreement == 0.5 and v.representative == 0
    assert [s["status"] for s in v.samples] == ["ok", "ok", "error", "no_code"]
    low = judge([ok(14.5), ok(14), RunResult("timeout"), ok(3)], 0.5)
    assert low.reason == "low_agreement" and low.agreement == 0.25


def test_judge_rejects_non_numbers_and_missing_code() -> None:
    assert judge([None, None], 0.5).reason == "no_code"
    v = judge([ok("14"), ok(True), RunResult("ok", value=None, value_repr="inf")], 0.5)
    assert v.reason == "no_numeric_answer" and {s["status"] for s in v.samples} == {"non_numeric"}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=2.0) as sb:
        yield sb


def record(solutions: list[str | None]) -> dict:
    return {"id": "0" * 16, "question": Q, "solutions": solutions}


def test_verify_keeps_agreeing_problems_with_normalised_code(sandbox) -> None:
    kept, rejected = verify_problems(
        [record([RIGHT, RIGHT_OTHER, WRONG, CRASH]), record([WRONG, RIGHT, CRASH, TEXT]), record([RANDOM] * 4)],
        sandbox, 0.5)
    assert len(kept) == 1 and kept[0]["answer"] == 14.5 and kept[0]["answer_agreement"] == 0.5
    assert kept[0]["answer_votes"] == 2
    assert kept[0]["code"].startswith("def simple_math_problem() -> float:") and Q in kept[0]["code"]
    assert kept[0]["verification"] == "passed"
    assert [s["status"] for s in kept[0]["samples"]] == ["ok", "ok", "ok", "error"]
    assert [r["reason"] for r in rejected] == ["low_agreement", "low_agreement"]


def test_two_programs_equal_after_normalisation_and_a_third_are_two_votes(sandbox) -> None:
    (kept,), _ = verify_problems([record([RIGHT, RIGHT_RENAMED, RIGHT_OTHER])], sandbox, 0.5)
    assert kept["answer"] == 14.5 and kept["answer_agreement"] == 1.0  # every sample returned it...
    assert kept["answer_votes"] == 2  # ...but only two programs did
    programs = [s["program"] for s in kept["samples"]]
    assert programs[0] == programs[1] != programs[2]


def test_a_program_sampled_twice_is_one_vote(sandbox) -> None:
    same = [record([RIGHT, RIGHT_RENAMED, WRONG, CRASH])]
    _, (rejected,) = verify_problems(same, sandbox, 0.5)  # one distinct program of four: 25%
    assert rejected["reason"] == "low_agreement" and "1/4 distinct programs" in rejected["detail"]
    (kept,), _ = verify_problems(same, sandbox, Rule(0.5, distinct=False))  # counting samples, as before
    assert kept["answer_votes"] == 1 and kept["answer_agreement"] == 0.5
    _, (few,) = verify_problems([record([RIGHT, RIGHT_RENAMED])], sandbox, Rule(0.5, distinct=False, min_votes=2))
    assert few["reason"] == "too_few_programs"


# Its value changes with every run: four samples could never agree, but one sample (k = 1) agrees with
# itself, and the determinism re-run of the stored code, later, returns another value.
CLOCK = "def simple_math_problem():\n    import time\n    return float(time.time_ns())\n"
# Correct only with the module-level names that the stored (normalised) code leaves out.
MODULE_STATE = "NOTEBOOKS = 3 * 4\nPENS = 2 * 1.25\n\ndef simple_math_problem():\n    return NOTEBOOKS + PENS\n"


def test_a_solution_that_does_not_rerun_to_its_answer_is_nondeterministic(sandbox) -> None:
    kept, rejected = verify_problems([record([CLOCK]), record([MODULE_STATE] * 4), record([RIGHT] * 4)],
                                     sandbox, Rule(1.0, distinct=False))
    assert [r["answer"] for r in kept] == [14.5]  # the same threshold keeps the honest solution
    assert [r["reason"] for r in rejected] == ["nondeterministic", "nondeterministic"]
    clock, module_state = (json.loads(r["record_json"]) for r in rejected)
    assert clock["answer_agreement"] == 1.0 and clock["samples"][0]["status"] == "ok"
    first = clock["answer"]
    again = float(re.fullmatch(r"re-run gave ok ([0-9.e+]+), first runs agreed on .*", rejected[0]["detail"])[1])
    assert again > first  # a later clock reading, not the answer the samples agreed on
    assert module_state["answer"] == 14.5 and module_state["answer_agreement"] == 1.0
    assert rejected[1]["detail"] == "re-run gave error None, first runs agreed on 14.5"


def test_the_stored_code_reruns_to_the_stored_answer(sandbox) -> None:
    (kept,), _ = verify_problems([record([RIGHT, RIGHT_OTHER])], sandbox, 1.0)
    again = sandbox.run(kept["code"] + "\nresult = simple_math_problem()")
    assert again.ok and round(again.value, 6) == kept["answer"]


CHECKS = QuestionFilterConfig()


@pytest.mark.parametrize(("question", "reason"), [
    ("", "empty_question"),
    ("Sam has 3 cats.", "too_short"),
    ("Sam has many cats and some dogs and he walks all of them every single day. How many legs?",
     "too_few_numbers"),
    ("Sam has 3 cats and 4 dogs and he walks all of them every single day before school starts.", "no_question"),
    ("Sam has 3 cats and 4 dogs, so 3 + 4 = 7 pets in the house every day. How many pets does he have?",
     "leaks_solution"),
    (Q, "copied_seed"),
])
def test_question_checks(question: str, reason: str) -> None:
    verdict = check_question(question, Q, CHECKS)
    assert verdict is not None and verdict[0] == reason, verdict


def test_a_good_question_passes() -> None:
    q = "Liam buys 5 apples for $2 each and 3 pears for $1.50 each. How much does he pay in all?"
    assert check_question(q, Q, CHECKS) is None
