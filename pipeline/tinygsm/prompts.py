"""TinyGSM prompts, in two steps as in TinyGSM's two-step variant.

1. From a seed problem, the model writes a new problem with the same steps
   and new names and numbers.
2. For that problem, the model writes ``k`` independent Python solutions,
   each a ``simple_math_problem()`` function, shown one worked example (the
   seed's own solution, or a shipped one) to copy the format from.

The wording is tinyforge's own; a template id carries a hash of its text.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from pipeline.fingerprint import digest
from pipeline.llm.types import Message, derive_seed
from pipeline.solving import SOLUTION_TEMPLATE, SOLUTION_TEMPLATE_ID
from pipeline.structured import object_schema
from pipeline.tinygsm.seeds import Seed

QUESTION_TEMPLATE = (
    "Rewrite this math word problem with a different name, different things and different numbers. "
    "Keep the same steps and end with the question.\n\nProblem: {question}"
)
# Two worked rewrites shown as earlier chat turns. Without them SmolLM2-135M
# mostly solves the problem instead of rewriting it: on 16 seeds, problems that
# passed the question checks went from about 1 to 5.
QUESTION_EXAMPLES = (
    ("Maya buys 3 notebooks that cost $4 each and 2 pens that cost $1.25 each. She pays with a $20 bill. "
     "How much change does she get?",
     "Leo buys 4 folders that cost $3 each and 3 markers that cost $1.50 each. He pays with a $25 bill. "
     "How much change does he get?"),
    ("A garden has 6 rows of tomato plants with 8 plants in each row. Each plant gives 5 tomatoes. "
     "How many tomatoes does the garden give?",
     "A farm has 9 rows of apple trees with 7 trees in each row. Each tree gives 30 apples. "
     "How many apples does the farm give?"),
)
# With structured output the rewrite is a JSON object, and the examples show one.
QUESTION_JSON_SUFFIX = ' Answer with JSON: {{"question": "..."}}'  # a format string, like the template
QUESTION_SCHEMA = object_schema(question={"type": "string"})

QUESTION_TEMPLATE_ID = "tinygsm.question@" + digest([QUESTION_TEMPLATE, QUESTION_EXAMPLES])[:8]
QUESTION_JSON_TEMPLATE_ID = "tinygsm.question-json@" + digest(
    [QUESTION_TEMPLATE, QUESTION_EXAMPLES, QUESTION_JSON_SUFFIX, QUESTION_SCHEMA])[:8]


def _question_turns(structured: bool) -> list[tuple[str, str]]:
    suffix = QUESTION_JSON_SUFFIX if structured else ""
    return [(QUESTION_TEMPLATE + suffix, json.dumps({"question": a}) if structured else a)
            for _, a in QUESTION_EXAMPLES]


def question_template_id(structured: bool) -> str:
    return QUESTION_JSON_TEMPLATE_ID if structured else QUESTION_TEMPLATE_ID


TEMPLATES = {
    template_id: "\n\n".join(
        [f"[user] {t.format(question=q)}\n[assistant] {a}"
         for (q, _), (t, a) in zip(QUESTION_EXAMPLES, _question_turns(structured), strict=True)]
        + [f"[user] {QUESTION_TEMPLATE + (QUESTION_JSON_SUFFIX if structured else '')}"])
    for structured, template_id in ((False, QUESTION_TEMPLATE_ID), (True, QUESTION_JSON_TEMPLATE_ID))
} | {SOLUTION_TEMPLATE_ID: SOLUTION_TEMPLATE}  # step 2 is pipeline.solving's


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    index: int
    seed: Seed
    question_seed: int
    solution_seed: int


def plan_problem(index: int, recipe_seed: int, seeds: list[Seed]) -> ProblemSpec:
    rng = random.Random(f"tinygsm:{recipe_seed}:{index}")
    return ProblemSpec(index, seeds[rng.randrange(len(seeds))], derive_seed(recipe_seed, "question", index),
                       derive_seed(recipe_seed, "solution", index))


def question_prompt(seed: Seed, structured: bool = False) -> str:
    return (QUESTION_TEMPLATE + (QUESTION_JSON_SUFFIX if structured else "")).format(question=seed.question)


def question_messages(seed: Seed, structured: bool = False) -> tuple[Message, ...]:
    """The few-shot chat: two example rewrites, then the seed to rewrite."""
    turns: list[Message] = []
    for (q, _), (template, answer) in zip(QUESTION_EXAMPLES, _question_turns(structured), strict=True):
        turns += [Message("user", template.format(question=q)), Message("assistant", answer)]
    return (*turns, Message("user", question_prompt(seed, structured)))
