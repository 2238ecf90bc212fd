"""A planted corpus with known difficulty, for validating the scores.

Easy records fill one repetitive template from a few slot words; hard records
are the same kind of words shuffled into no order, or random tokens. A
difficulty score worth its name ranks the hard ones as harder.
"""

from __future__ import annotations

import random

_ANIMALS = ["cat", "dog", "bird", "fish", "frog"]
_VERBS = ["jump", "run", "sing", "play", "swim"]
_PLACES = ["park", "garden", "house", "pond", "yard"]
_TEMPLATE = ("The {a} liked to {v}. Every day the {a} went to the {p} to {v}. "
             "The {a} was happy in the {p}. The end.")
_INSTRUCTION = "Write a short story about a {a}."


def planted_corpus(n_easy: int, n_hard: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[bool]]:
    """((instruction, response) pairs, is_hard flags), shuffled together."""
    rng = random.Random(seed)
    rows: list[tuple[tuple[str, str], bool]] = []
    for _ in range(n_easy):
        a, v, p = rng.choice(_ANIMALS), rng.choice(_VERBS), rng.choice(_PLACES)
        rows.append(((_INSTRUCTION.format(a=a), _TEMPLATE.format(a=a, v=v, p=p)), False))
    junk = [f"{rng.choice('bcdfgklmnprstvz')}{rng.choice('aeiou')}{rng.choice('bcdfgklmnprstvz')}{i}"
            for i in range(3000)]
    for i in range(n_hard):
        a = rng.choice(_ANIMALS)
        if i % 2:
            words = _TEMPLATE.format(a=a, v=rng.choice(_VERBS), p=rng.choice(_PLACES)).split()
            rng.shuffle(words)
            text = " ".join(words)
        else:
            text = " ".join(rng.choice(junk) for _ in range(25))
        rows.append(((_INSTRUCTION.format(a=a), text), True))
    rng.shuffle(rows)
    return [r[0] for r in rows], [r[1] for r in rows]
