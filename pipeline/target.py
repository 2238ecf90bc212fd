"""A target row count: generate in rounds until the build publishes exactly N records, or the budget ends.

``generate.count`` is how many candidates a build writes; what survives the
checks, verification and dedup is unknown until they run. With
``generate.target = N`` the build runs its stages on ``count`` candidates,
estimates the yield from what survived, asks for the remainder plus a margin,
and runs again, until N records survive or ``generate.max_candidates`` are
spent. Candidate i is the same whatever the round sizes (its seeds come from
its index), so a later round re-reads the earlier candidates from the
response cache: nothing is paid for twice, and raising N continues from
where the last build stopped. The ``target`` stage then keeps the first N
survivors in candidate order and rejects the rest as ``beyond_target``, so
the published splits add up to N exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import Field

if TYPE_CHECKING:  # (a recipe's generate section checks its budget here: check_budget)
    from pipeline.recipe import BaseRecipe

R = TypeVar("R", bound="BaseRecipe")

# `generate.target` and `generate.max_candidates`, in each generating kind's `[generate]`
Target = Annotated[int | None, Field(gt=0, le=10_000_000, description="publish exactly this many records: "
                                     "generate in rounds (the first of `count` candidates) until they survive")]
CandidateBudget = Annotated[int | None, Field(gt=0, le=100_000_000, description="with target: candidates at "
                                              "most, in all rounds (default 20 x target)")]

MARGIN = 1.25  # ask for a quarter more than the yield so far says is needed: one more round costs a gather


@dataclass(frozen=True)
class Budget:
    target: int
    max_candidates: int
    batch_size: int


def next_count(candidates: int, survivors: int, budget: Budget) -> int | None:
    """How many candidates the next round should have in all, or None when this round is the last
    (the target is met, or the budget is spent)."""
    if survivors >= budget.target or candidates >= budget.max_candidates:
        return None
    missing = budget.target - survivors
    # nothing survived yet: the yield is below 1/candidates; try four times as many
    per_survivor = candidates / survivors if survivors else 4.0 * candidates
    more = max(budget.batch_size, math.ceil(missing * per_survivor * MARGIN))
    return min(budget.max_candidates, candidates + more)


def select(records: list[dict[str, Any]], target: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first ``target`` records (the stages keep candidate order), and the rest."""
    return records[:target], records[target:]


def sentence(published: int, target: int, candidates: int, rounds: int, max_candidates: int,
             budget_key: str = "generate.max_candidates", ran_out: bool = False) -> str:
    """What the card and the build summary say of the target; ``ran_out``: the input had no more
    candidates (an evolution's seed file)."""
    if published >= target:
        return (f"Target met: {target} records from {candidates} candidates in {rounds} "
                f"round{'s' if rounds > 1 else ''}.")
    if ran_out:
        return (f"Target not met: the input ran out at {candidates} candidates with {published} of the {target} "
                f"records asked for ({rounds} round{'s' if rounds > 1 else ''}); add candidates to the input to "
                "continue from here.")
    return (f"Target not met: the budget of {max_candidates} candidates ran out with {published} of the "
            f"{target} records asked for ({rounds} round{'s' if rounds > 1 else ''}); raise "
            f"{budget_key} to continue from here.")


def check_budget(count: int, target: int | None, max_candidates: int | None) -> None:
    if max_candidates is not None and target is None:
        raise ValueError("max_candidates is the budget of a target: set target too")
    if max_candidates is not None and max_candidates < count:
        raise ValueError(f"max_candidates ({max_candidates}) is smaller than count ({count}), the first round")


@dataclass(frozen=True)
class Growth:
    """How a kind's build grows toward a target row count (``pipeline.target``), as dotted recipe keys:
    the target, its budget, the candidate count each round sets, and the step a round grows by at least.
    The production stages must leave ``target`` and ``budget`` out of their fingerprints (they cannot
    change a candidate); ``count`` they read."""

    target: str = "generate.target"
    budget: str = "generate.max_candidates"
    count: str = "generate.count"
    step: str = "generate.batch_size"

    def get(self, recipe: BaseRecipe, key: str) -> Any:
        section, name = key.split(".")
        return getattr(getattr(recipe, section), name)

    def with_count(self, recipe: R, count: int) -> R:
        section, name = self.count.split(".")
        return recipe.model_copy(update={section: getattr(recipe, section).model_copy(update={name: count})})


GENERATE = Growth()  # the kinds that generate: tinystories, tinygsm
