"""TinyGSM build flow: generate -> verify -> decontaminate -> dedup -> publish.

Generation is one Prefect task per batch of problems; verification is one
task that runs every sampled solution through the sandbox's worker pool.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_build_artifacts
from flows.common import build_summary, generate_in_batches, log_stages, open_build
from flows.runners import task_runner
from pipeline.recipe import TinyGSMRecipe
from pipeline.tinygsm import build as gsm

_task = task(cache_policy=NO_CACHE, persist_result=False)


@_task(task_run_name="generate-batch-{batch}")
def generate_batch(recipe: TinyGSMRecipe, batch: int) -> dict[str, Any]:
    return gsm.generate_batch(recipe, batch)


finish_generate = _task(gsm.finish_generate, name="gather-generate")
verify_stage = _task(gsm.verify_stage, name="verify")
decontaminate_stage = _task(gsm.decontaminate_stage, name="decontaminate")
dedup_stage = _task(gsm.dedup_stage, name="dedup")
score_stage = _task(gsm.score_stage, name="score")
publish_stage = _task(gsm.publish_stage, name="publish")


@flow(name="tinygsm", task_runner=task_runner(), log_prints=True)
def tinygsm_flow(recipe_path: str, output_root: str | None = None, name: str | None = None,
                 seed: int | None = None, dated: bool = False, wait_for_lock: float = 0.0) -> dict[str, Any]:
    """Build a TinyGSM corpus from a recipe file; returns where the dataset is and what it cost.

    Parameters besides the recipe override it for this run (see ``flows.common.open_build``).
    """
    with open_build(TinyGSMRecipe, recipe_path, output_root=output_root, name=name, seed=seed, dated=dated,
                    wait_for_lock=wait_for_lock) as recipe:
        return _build(recipe)


def _build(recipe: TinyGSMRecipe) -> dict[str, Any]:
    run_usage = generate_in_batches(recipe, gsm, generate_batch)
    generated = finish_generate(recipe)
    verified = verify_stage(recipe, generated)
    clean = decontaminate_stage(recipe, verified)
    deduped = dedup_stage(recipe, clean)
    scored = score_stage(recipe, deduped)
    stages = [generated, verified, clean, deduped, scored]
    log_stages(stages)
    published, reused = publish_stage(recipe, stages)
    publish_build_artifacts(recipe.name, published)
    return build_summary(recipe, published, reused, stages, run_usage)
