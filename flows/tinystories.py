"""TinyStories build flow: generate -> filter -> dedup -> publish.

Generation runs one Prefect task per batch (``generate.batch_size`` stories),
never one per story; the other stages are one task each. All the data logic
is in ``pipeline.tinystories.build``; this module only orchestrates it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_build_artifacts
from flows.common import build_summary, generate_in_batches, log_stages, save_recipe
from pipeline.recipe import TinyStoriesRecipe, load_recipe
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


@flow(name="tinystories", log_prints=True)
def tinystories_flow(recipe_path: str, output_root: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Build a TinyStories corpus from a recipe file; returns where the dataset is and what it cost."""
    recipe = load_recipe(recipe_path, output_root=output_root, name=name)
    if not isinstance(recipe, TinyStoriesRecipe):
        raise ValueError(f"{recipe_path} is a {recipe.kind!r} recipe, not tinystories")
    get_run_logger().info("build %s -> %s", recipe.build_id, recipe.build_dir)
    save_recipe(recipe)

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
