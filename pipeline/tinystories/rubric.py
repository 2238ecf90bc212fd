"""The judge's rubric for stories (:mod:`pipeline.judge`): the TinyStories paper's grading (Eldan & Li,
2023, section 3): grammar, creativity and consistency, each out of 10, and the age group the text suits, A
(3 or under) to F (13-16). Our stories are written from instructions rather than continued from a
beginning, so consistency is with the instructions (the words, the features, the summary) and with the
story's own beginning.
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
