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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.exemplars import Exemplar, ExemplarPool, as_turns, load_pool
from pipeline.fingerprint import digest
from pipeline.llm.types import Message, derive_seed
from pipeline.solving import SOLUTION_TEMPLATE, SOLUTION_TEMPLATE_ID
from pipeline.structured import object_schema
from pipeline.tinygsm.seeds import Seed

QUESTION_TEMPLATE = (
    "Rewrite this math word problem with a different name, different things and different numbers. "
    "Keep the same steps and end with the question.\n\nProblem: {question}"
)
# Worked rewrites (data/exemplars/rewrites.jsonl), drawn per problem, are shown as earlier chat turns.
# Without any SmolLM2-135M mostly solves the problem instead of rewriting it: on 16 seeds, problems that
# passed the question checks went from about 1 to 5 with two.
# With structured output the rewrite is a JSON object, and the examples show one.
QUESTION_JSON_SUFFIX = ' Answer with JSON: {{"question": "..."}}'  # a format string, like the template
QUESTION_SCHEMA = object_schema(question={"type": "string"})

QUESTION_TEMPLATE_ID = "tinygsm.question@" + digest([QUESTION_TEMPLATE, "pool"])[:8]
QUESTION_JSON_TEMPLATE_ID = "tinygsm.question-json@" + digest(
    [QUESTION_TEMPLATE, "pool", QUESTION_JSON_SUFFIX, QUESTION_SCHEMA])[:8]


def question_template_id(structured: bool) -> str:
    return QUESTION_JSON_TEMPLATE_ID if structured else QUESTION_TEMPLATE_ID


TEMPLATES = {
    QUESTION_TEMPLATE_ID: QUESTION_TEMPLATE,
    QUESTION_JSON_TEMPLATE_ID: QUESTION_TEMPLATE + QUESTION_JSON_SUFFIX,
    SOLUTION_TEMPLATE_ID: SOLUTION_TEMPLATE,  # step 2 is pipeline.solving's
}


def rewrite_exemplars(path: Path) -> ExemplarPool:
    return load_pool(path, "rewrites", ("question", "rewrite", "solution"))


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


def question_messages(seed: Seed, structured: bool = False,
                      exemplars: Sequence[Exemplar] | None = None) -> tuple[Message, ...]:
    """The few-shot chat: each exemplar's problem in the template and its rewrite as the reply (JSON where
    the backend enforces the schema), then the seed to rewrite. ``None``: the pool's first two."""
    if exemplars is None:
        from pipeline.paths import REWRITE_EXEMPLARS_FILE

        exemplars = rewrite_exemplars(REWRITE_EXEMPLARS_FILE).items[:2]

    def turn(e: Exemplar) -> tuple[str, str]:
        reply = e.fields["rewrite"]
        return question_prompt(Seed(e.id, e.fields["question"], None, None), structured), \
            json.dumps({"question": reply}) if structured else reply

    return (*as_turns(exemplars, turn), Message("user", question_prompt(seed, structured)))
