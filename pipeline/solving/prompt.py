"""The solution prompt: one worked example to copy the format from, then the problem to solve.

Every math solver in tinyforge asks the same way (TinyGSM's generation, the
evolution flow's solvability gate, calibration on problems with known
answers), so what calibration measures is what the build ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Protocol

from pipeline.fingerprint import digest
from pipeline.paths import SEEDS_FILE
from pipeline.records import iter_jsonl

SOLUTION_TEMPLATE = (
    "Here is a math word problem and a Python function that solves it.\n\nProblem: {example_question}\n\n"
    "```python\n{example_solution}\n```\n\n"
    "Now write a Python function named simple_math_problem that solves this new problem the same way."
    "\n\nProblem: {question}"
)
# the id keeps its first home's name: published records and fingerprints carry it
SOLUTION_TEMPLATE_ID = "tinygsm.solution@" + digest(SOLUTION_TEMPLATE)[:8]


class WorkedExample(Protocol):
    """A problem with a worked Python solution (a TinyGSM seed is one)."""

    @property
    def question(self) -> str: ...

    @property
    def solution(self) -> str | None: ...


def solution_prompt(question: str, example: WorkedExample) -> str:
    if example.solution is None:
        raise ValueError("the worked example has no solution")
    return SOLUTION_TEMPLATE.format(example_question=example.question, example_solution=example.solution.strip(),
                                    question=question)


@dataclass(frozen=True, slots=True)
class Worked:
    question: str
    solution: str


@cache  # read once: every solution request of every batch shows it
def shipped_example() -> Worked:
    """The first shipped seed problem and its solution: the format every solver is shown by default."""
    _, row = next(iter_jsonl(SEEDS_FILE))
    return Worked(row["question"], row["solution"])
