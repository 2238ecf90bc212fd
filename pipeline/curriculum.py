"""Curriculum orders: easy records before hard ones, by any numeric column, staged over epochs.

"Curriculum Learning for Small Code Language Models" (Naïr et al. 2024) cuts a
corpus into difficulty levels (easy, medium, hard) and compares schedules over
training stages. Here a stage is ``epochs_per_stage`` epochs, and the levels
are equal parts of the split ranked by the column (ties in a seeded order):

* ``sequential``: stage ``k`` trains on level ``k`` alone;
* ``incremental``: stage ``k`` trains on levels ``0..k`` shuffled together;
* ``hybrid``: stage ``k`` trains on level ``k`` first, then on levels
  ``0..k`` together: each new level is met on its own, then reviewed with
  what came before. (The paper proposes a hybrid of the two; its exact
  definition is not in our notes, and this is ours.)

After the last stage the epochs repeat it. Which rows an epoch holds is a
function of the seed, the epoch and the column's values: nothing else. The
loader (``pipeline.loader``) orders the rows of each part of an epoch as it
orders a shuffled epoch (shards in a seeded order, rows in a seeded order
inside each), so each part reads every shard once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import UserError

Schedule = Literal["sequential", "incremental", "hybrid"]
SCHEDULES: tuple[Schedule, ...] = ("sequential", "incremental", "hybrid")


@dataclass(frozen=True)
class Curriculum:
    """Easy to hard by ``column`` (``descending=True`` where a higher value is easier, as learning
    percentage is), in ``levels`` equal parts, one stage of ``epochs_per_stage`` epochs per level."""

    column: str
    schedule: Schedule = "incremental"
    levels: int = 3
    epochs_per_stage: int = 1
    descending: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise UserError(f"a curriculum needs a column name, not {self.column!r}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"curriculum schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        for name in ("levels", "epochs_per_stage"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"curriculum {name} must be a positive integer, not {value!r}")

    def stage(self, epoch: int) -> int:
        return min(epoch // self.epochs_per_stage, self.levels - 1)

    def parts(self, epoch: int) -> list[tuple[int, ...]]:
        """The epoch as parts read one after another, each the levels it holds."""
        k = self.stage(epoch)
        if self.schedule == "sequential":
            return [(k,)]
        if self.schedule == "incremental":
            return [tuple(range(k + 1))]
        return [(k,), tuple(range(k + 1))] if k else [(0,)]

    def describe(self) -> dict[str, Any]:
        return {"curriculum": asdict(self)}


def assign_levels(values: np.ndarray, levels: int, seed: int, descending: bool = False) -> np.ndarray:
    """Each row's level, 0 the easiest: the rows ranked by value (ties in a seeded random order) and cut
    into ``levels`` parts whose sizes differ by at most one."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    tie = np.random.default_rng([seed, 2]).permutation(n)  # the trailing tag: apart from the loader's seeds
    ranked = np.lexsort((tie, -values if descending else values))
    level = np.empty(n, dtype=np.int32)
    for k, part in enumerate(np.array_split(ranked, levels)):
        level[part] = k
    return level
