"""Evol-Instruct operations: the prompts that make an instruction harder or new.

In-depth operations rewrite an instruction into a more complex one (add a
constraint, deepen, concretize, ask for more reasoning steps, complicate the
input); the in-breadth operation writes a new instruction in the same domain,
on a rarer topic. The wording follows WizardLM's released ``depth.py`` and
``breadth.py`` (role, objective, one method, a length budget, the words the
answer must not contain, then the prompt), shortened for small instruct
models: SmolLM2-135M echoes the long original back instead of rewriting
(``docs/evol.md`` has examples). Complicate-input is in the paper but not in
its released code; its method text here is ours, in the same style.

Every template has an id that hashes its text, so a change of wording is a
new template and a new cache key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from pipeline.llm.types import Message

OperationName = Literal["add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input",
                        "breadth"]

_DEPTH = (
    "I want you to act as a Prompt Rewriter. Rewrite the given prompt into a more complex version that is "
    "still reasonable and can be understood and answered by a person. Keep every detail and every input of "
    "the given prompt.\n"
    "Method: {method}\n"
    "Add only 10 to 20 words. Do not use the words 'given prompt' or 'rewritten prompt'. "
    "Reply with the rewritten prompt only.\n\n"
    "Given prompt: {instruction}\n"
    "Rewritten prompt:"
)

_BREADTH = (
    "I want you to act as a Prompt Creator. Draw inspiration from the given prompt to create a brand new "
    "prompt. It must belong to the same domain as the given prompt but be about a rarer topic, with similar "
    "length and complexity. It must be reasonable and understood and answered by a person.\n"
    "Do not use the words 'given prompt' or 'created prompt'. Reply with the created prompt only.\n\n"
    "Given prompt: {instruction}\n"
    "Created prompt:"
)

_METHODS: dict[str, str] = {
    "add_constraints": "Add one more constraint or requirement.",
    "deepen": "If the prompt asks about a certain issue, increase the depth and breadth of the question.",
    "concretize": "Replace general concepts with more specific concepts.",
    "increase_reasoning": "If the prompt can be solved with a few simple steps of thinking, rewrite it to "
                          "explicitly ask for multiple-step reasoning.",
    "complicate_input": "Add a small piece of input data that the prompt must work with: a short list, a "
                        "table, a few lines of text or code.",
}

# Math problems must stay problems: one numeric answer, no open questions.
_MATH_NOTE = ("The rewritten prompt must still be a math word problem with all the numbers it needs and "
              "exactly one numeric answer.")
_MATH_NOTE_BREADTH = ("The created prompt must be a math word problem with all the numbers it needs and "
                      "exactly one numeric answer.")

# The wording the evolved text must not contain: it would mean the template leaked into the data.
TEMPLATE_MARKERS = ("#the given prompt#", "#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt",
                    "rewritten prompt", "created prompt", "prompt rewriter", "prompt creator", "rewritten version",
                    "original prompt")


@dataclass(frozen=True)
class Operation:
    name: OperationName
    kind: Literal["depth", "breadth"]
    template: str

    @property
    def template_id(self) -> str:
        return f"evol.{self.name}@{hashlib.sha256(self.template.encode()).hexdigest()[:8]}"

    def prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction.strip())

    def messages(self, instruction: str) -> tuple[Message, ...]:
        return (Message("user", self.prompt(instruction)),)

    @property
    def instructions(self) -> str:
        """The template's own words, without the given instruction: what a copy of the prompt would repeat."""
        return self.template.replace("{instruction}", " ")


def _depth(name: str, math: bool) -> str:
    method = _METHODS[name] + (f" {_MATH_NOTE}" if math else "")
    return _DEPTH.replace("{method}", method)


def operation(name: OperationName, math: bool = False) -> Operation:
    """One operation's template, for general instructions or for math problems."""
    if name == "breadth":
        text = _BREADTH.replace("Reply with", f"{_MATH_NOTE_BREADTH} Reply with") if math else _BREADTH
        return Operation("breadth", "breadth", text)
    if name not in _METHODS:
        raise ValueError(f"unknown operation {name!r}")
    return Operation(name, "depth", _depth(name, math))


OPERATIONS: tuple[OperationName, ...] = (*_METHODS, "breadth")  # type: ignore[assignment]

# The "no information gain" judge, as in the paper's elimination step (App. G), phrased for any model.
JUDGE_TEMPLATE = (
    "Here are two instructions. Do you think they are equal to each other, which means: 1. they have the "
    "same constraints and requirements; 2. they have the same depth and breadth of the inquiry?\n"
    "The first prompt: {parent}\n"
    "The second prompt: {child}\n"
    "Your judgement (just answer: Equal or Not Equal, no need to explain the reason):"
)
JUDGE_TEMPLATE_ID = f"evol.judge@{hashlib.sha256(JUDGE_TEMPLATE.encode()).hexdigest()[:8]}"

RESPONSE_TEMPLATE_ID = "evol.response@chat"  # the instruction is sent as the user message, as it is


def judge_messages(parent: str, child: str) -> tuple[Message, ...]:
    return (Message("user", JUDGE_TEMPLATE.format(parent=parent.strip(), child=child.strip())),)


def judged_equal(text: str) -> bool | None:
    """The judge's verdict: True for Equal, False for Not Equal, None when it said neither."""
    t = " ".join(text.lower().split())
    if "not equal" in t[:60]:
        return False
    if t.startswith("equal") or " equal" in t[:20]:
        return True
    return None
