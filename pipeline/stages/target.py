"""The target stage: the first ``target`` survivors of a build grown in rounds (``pipeline.target``),
the rest rejected as ``beyond_target``."""

from __future__ import annotations

from typing import Any

from pipeline.recipe import BaseRecipe
from pipeline.records import rejection
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, record_stage
from pipeline.target import Growth, select, sentence

VERSION = 1


def target_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext, target: int, rounds: int,
                 max_candidates: int, grow: Growth, ran_out: bool = False) -> StageResult:
    """The first ``target`` survivors, in candidate order; the rest rejected as ``beyond_target``."""
    text_field = kind.text_field
    candidates = grow.get(recipe, grow.count)  # the last round's

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        kept, rest = select(records, target)
        rejected = [rejection(r, "target", "beyond_target", f"the first {target} survivors are published",
                              text_field) for r in rest]
        return kept, rejected, {"target": target, "candidates": candidates, "rounds": rounds,
                                "max_candidates": max_candidates, "met": len(kept) >= target,
                                "sentence": sentence(len(kept), target, candidates, rounds, max_candidates,
                                                     grow.budget, ran_out)}

    return record_stage(recipe, "target", upstream, version=VERSION, reads=(grow.target,), run=run,
                        extra={"rounds": rounds, "max_candidates": max_candidates, "ran_out": ran_out})
