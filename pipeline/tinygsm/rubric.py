"""The judge's rubric for math problems (:mod:`pipeline.judge`): what TinyGSM's verification cannot see,
whether the problem is well-posed and whether the program answers the question that was asked."""

from __future__ import annotations

from typing import Any

from pipeline.judge import Criterion, Rubric


def _math(r: dict[str, Any]) -> str:
    return (f"Problem: {r['question']}\n\nA Python solution:\n```python\n{r.get('code') or ''}\n```\n\n"
            f"Its answer: {r.get('answer')}")


MATH = Rubric(
    kind="tinygsm", subject="grade-school math word problem and the program that solves it",
    criteria=(
        Criterion("well_posed", "does the problem give every number it needs and ask exactly one clear question "
                                "with one right answer?"),
        Criterion("answers_question", "does the program compute the answer to the question that was asked, "
                                      "not some other quantity?"),
    ),
    present=_math,
)
