"""TinyStories build flow: generate -> filter -> dedup -> publish.

Generation runs one Prefect task per batch (``generate.batch_size`` stories),
never one per story; the other stages are one task each. All the data logic
is in ``pipeline.tinystories.build``; this module only orchestrates it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_build_artifacts
from flows.common import build_summary, generate_in_batches, log_stages, open_build
from flows.runners import task_runner
from pipeline.recipe import TinyStoriesRecipe
from pipeline.tinystories import build as stories

# tinyforge's own fingerprints and response cache decide what to skip, so
# Prefect's result cache is off: it would only hash large inputs for nothing.
_task = task(cache_policy=NO_CACHE, persist_result=False)


@_task(task_run_name="generate-batch-{batch}")
def generate_batch(recipe: TinyStoriesRecipe, batch: int) -> dict[str, Any]:
    return stories.generate_batch(recipe, batch)


finish_generate = _task(stories.finish_generate, name="gather-generate")
filter_stage = _task(stories.filter_stage, name="filter")
dedup_stage = _task(stories.dedup_stage, name="dedup")
score_stage = _task(stories.score_stage, name="score")
publish_stage = _task(stories.publish_stage, name="publish")


@flow(name="tinystories", task_runner=task_runner(), log_prints=True)
def tinystories_flow(recipe_path: str, output_root: str | None = None, name: str | None = None,
                     seed: int | None = None, dated: bool = False, wait_for_lock: float = 0.0) -> dict[str, Any]:
    """Build a TinyStories corpus from a recipe file; returns where the dataset is and what it cost.

    Parameters besides the recipe override it for this run (see ``flows.common.open_build``).
    """
    with open_build(TinyStoriesRecipe, recipe_path, output_root=output_root, name=name, seed=seed, dated=dated,
                    wait_for_lock=wait_for_lock) as recipe:
        return _build(recipe)


def _build(recipe: TinyStoriesRecipe) -> dict[str, Any]:
    run_usage = generate_in_batches(recipe, stories, generate_batch)
    generated = finish_generate(recipe)
    filtered = filter_stage(recipe, generated)
    deduped = dedup_stage(recipe, filtered)
    scored = score_stage(recipe, deduped)
    stages = [generated, filtered, deduped, scored]
    log_stages(stages)
    published, reused = publish_stage(recipe, stages)
    publish_build_artifacts(recipe.name, published)
    return build_summary(recipe, published, reused, stages, run_usage)
