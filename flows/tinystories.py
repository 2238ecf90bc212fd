"""TinyStories build flow: generate -> filter -> dedup -> publish.

Generation runs one Prefect task per batch (``generate.batch_size`` stories),
never one per story; the other stages are one task each. All the data logic
is in ``pipeline.tinystories.build``; this module only orchestrates it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import Progress, publish_build_artifacts
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
publish_stage = _task(stories.publish_stage, name="publish")


@flow(name="tinystories", log_prints=True)
def tinystories_flow(recipe_path: str, output_root: str | None = None) -> dict[str, Any]:
    """Build a TinyStories corpus from a recipe file; returns where the dataset is and what it cost."""
    log = get_run_logger()
    recipe = load_recipe(recipe_path, output_root=output_root)
    build = stories.build_dir(recipe)
    log.info("build %s -> %s", recipe.build_id, build.root)

    batches = stories.batch_ranges(recipe)
    progress = Progress(recipe.name, "generate", recipe.generate.count)
    run_usage = {"model_calls": 0, "cache_hits": 0, "completion_tokens": 0}
    if stories.build_dir(recipe).done("generate", stories.generate_fingerprint(recipe)) is None:
        for b in range(len(batches)):
            s = generate_batch(recipe, b)
            for k in run_usage:
                run_usage[k] += s.get(k, 0)
            pct = progress.advance(s["stories"])
            rate = s["completion_tokens"] / s["seconds"] if s["seconds"] else 0.0
            log.info("generate: batch %d/%d %s, %d model calls, %d cache hits, %.0f tok/s (%.0f%% done)",
                     b + 1, len(batches), "reused" if s["skipped"] else "done", s["model_calls"],
                     s["cache_hits"], rate, pct)
    else:
        progress.advance(recipe.generate.count)
    generated = finish_generate(recipe)
    filtered = filter_stage(recipe, generated)
    deduped = dedup_stage(recipe, filtered)
    stages = [generated, filtered, deduped]
    for s in stages:
        log.info("%s: %s, %d kept, %d rejected", s.name, "reused" if s.skipped else "ran", s.rows["records"],
                 s.rows.get("rejected", 0))
    published, reused = publish_stage(recipe, stages)
    publish_build_artifacts(recipe.name, published, build)
    log.info("publish: %s %s", "reused" if reused else "wrote", published.path)
    return {
        "build_id": recipe.build_id,
        "dataset": str(published.path),
        "report": str(published.path / "report.md"),
        "splits": {k: v["rows"] for k, v in published.manifest["splits"].items()},
        "run_usage": run_usage,
        "stages": {s.name: "reused" if s.skipped else "ran" for s in stages} | {"publish": "reused" if reused else "ran"},
    }
