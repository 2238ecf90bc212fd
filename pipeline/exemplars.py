"""Exemplar prompting: example requests and replies shown to the model as earlier chat turns.

Small instruct models imitate far better than they follow instructions: with
two example stories as earlier turns, SmolLM2-135M wrote in TinyStories'
register where the instruction alone got meta-text (``docs/exemplars.md``).
A pool is a JSONL file shipped in ``data/exemplars/`` (original texts written
for tinyforge), one exemplar per line with an ``id``. Which exemplars a
sample sees is drawn from its own seed, so sample i sees the same ones
whatever the batch size, and every record lists their ids; the pool's
template id hashes the file, so an edited pool is a new template and a new
cache key.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.fingerprint import files_digest
from pipeline.llm.types import Message
from pipeline.records import iter_jsonl


@dataclass(frozen=True)
class Exemplar:
    id: str
    fields: dict[str, Any]  # the line as written: what a kind turns into a request and a reply


@dataclass(frozen=True)
class ExemplarPool:
    name: str  # "stories", "evolutions": the template id's stem
    items: tuple[Exemplar, ...]
    digest: str  # of the file
    source: str = ""  # the file's name

    @property
    def template_id(self) -> str:
        return f"exemplars.{self.name}@{self.digest[:8]}"

    def describe(self, k: int, shown_as: str) -> str:
        """What a card's template list says of the pool: how many of which exemplars, shown how."""
        return f"{k} of the {len(self.items)} example {self.name} in {self.source}, {shown_as}, before the real request"

    def draw(self, k: int, *key: object, among: Callable[[Exemplar], bool] | None = None,
             prefer: Callable[[Exemplar], bool] | None = None) -> tuple[Exemplar, ...]:
        """``k`` distinct exemplars chosen by ``key`` (the recipe seed and the sample's index): the same key
        draws the same ones, in the same order. ``among`` limits the draw; ``prefer`` draws from the
        exemplars it accepts first (the same operation), then from the rest."""
        if k <= 0:
            return ()
        rng = random.Random(":".join(["exemplars", self.name, *map(str, key)]))
        items = [e for e in self.items if among is None or among(e)]
        rng.shuffle(items)
        if prefer is not None:
            items.sort(key=lambda e: not prefer(e))  # stable: the shuffled order within each group stays
        return tuple(items[:k])


@cache
def load_pool(path: Path, name: str, required: tuple[str, ...]) -> ExemplarPool:
    """The pool in ``path``; every line needs an ``id`` and the ``required`` fields (a UserError names
    the line that lacks one)."""
    items, seen = [], set()
    for lineno, row in iter_jsonl(path):
        missing = [f for f in ("id", *required) if not row.get(f) and row.get(f) != []]
        if missing:
            raise UserError(f"{path}:{lineno}: an exemplar needs {', '.join(missing)}")
        if row["id"] in seen:
            raise UserError(f"{path}:{lineno}: exemplar id {row['id']!r} appears twice")
        seen.add(row["id"])
        items.append(Exemplar(str(row["id"]), row))
    if not items:
        raise UserError(f"{path}: no exemplars")
    return ExemplarPool(name, tuple(items), files_digest([path]), path.name)


def as_turns(exemplars: Sequence[Exemplar], turn: Callable[[Exemplar], tuple[str, str]]) -> list[Message]:
    """Each exemplar as a user request and the assistant's reply, in order, to precede the real request."""
    messages: list[Message] = []
    for e in exemplars:
        request, reply = turn(e)
        messages += [Message("user", request), Message("assistant", reply)]
    return messages
