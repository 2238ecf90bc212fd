"""The judge's rubric for evolved instructions (:mod:`pipeline.judge`): what Evol-Instruct's elimination
step approximates with rules: is it an instruction at all, is it clear, can it be answered, is it harder
than its parent."""

from __future__ import annotations

from typing import Any

from pipeline.judge import Criterion, Rubric


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
