"""The judge's rubric for each built-in kind (:mod:`pipeline.judge`).

Stories follow the TinyStories paper's grading (Eldan & Li, 2023, section
3): grammar, creativity and consistency, each out of 10, and the age group
the text suits, A (3 or under) to F (13-16). Our stories are written from
instructions rather than continued from a beginning, so consistency is with
the instructions (the words, the features, the summary) and with the story's
own beginning. Math problems are graded on what TinyGSM's verification cannot
see: whether the problem is well-posed, and whether the program answers the
question that was asked. Evolved instructions are graded on what
Evol-Instruct's elimination step approximates with rules: is it an
instruction at all, is it clear, can it be answered, is it harder than its
parent.
"""

from __future__ import annotations

from typing import Any

from pipeline.judge import Criterion, Rubric

AGE_GROUPS = ("A", "B", "C", "D", "E", "F")


def _story(r: dict[str, Any]) -> str:
    lines = ["The writer was asked for a story that:", f"- uses the words: {', '.join(r.get('words') or [])}"]
    if r.get("features"):
        lines.append(f"- has these features: {', '.join(r['features'])}")
    if r.get("sentence"):
        lines.append(f'- contains the sentence: "{r["sentence"]}"')
    if r.get("summary"):
        lines.append(f"- follows this summary: {r['summary']}")
    return "\n".join([*lines, "", "The story:", r["story"]])


STORIES = Rubric(
    kind="tinystories", subject="short story written for young children",
    notes="Age groups: A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16.",
    criteria=(
        Criterion("grammar", "is every sentence grammatical English?"),
        Criterion("creativity", "is the story original and interesting for a child?"),
        Criterion("consistency", "does the story do what the writer was asked, and does its plot make sense from "
                                 "its beginning to its end?"),
        Criterion("age_group", "which age group is the story written for?", labels=AGE_GROUPS),
    ),
    present=_story,
)


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


def _evolved(r: dict[str, Any]) -> str:
    parent = r.get("parent_instruction")
    head = f"The original instruction:\n{parent}\n\n" if parent else ""
    return f"{head}The rewritten instruction:\n{r['instruction']}"


INSTRUCTIONS = Rubric(
    kind="evol_instruct", subject="instruction, rewritten from an original instruction to be harder or new",
    criteria=(
        Criterion("is_instruction", "does the rewritten text ask the reader to do or answer something (not a "
                                    "statement, an answer, or talk about prompts)?"),
        Criterion("clear", "is it clear what is asked?"),
        Criterion("answerable", "could a capable assistant answer it well?"),
        Criterion("harder", "is it harder or richer to answer than the original instruction?"),
    ),
    present=_evolved,
)

RUBRICS = {r.kind: r for r in (STORIES, MATH, INSTRUCTIONS)}
