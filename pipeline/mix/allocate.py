"""How many records each source of a mix gives: pure functions of the ratios, budgets and what is there."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` records shared in proportion to ``weights``, each count within one record of its exact
    share, summing to ``total`` (largest remainders; ties go to the earlier source)."""
    if total < 0 or not weights or any(w <= 0 for w in weights):
        raise ValueError(f"cannot share {total} records by {list(weights)}")
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def within_budget(tokens: np.ndarray, budget: int) -> int:
    """How many of the records, in order, fit in ``budget`` tokens together (the first that would go over
    ends the take)."""
    fits = np.flatnonzero(np.cumsum(tokens, dtype=np.int64) > budget)
    return int(fits[0]) if len(fits) else len(tokens)
