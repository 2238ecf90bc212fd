"""Around every build run: its recipe resolved for this run, its build directory held, its cache shared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from pipeline.llm import ResponseCache, cache_path
from pipeline.lock import BuildLock
from pipeline.recipe import BaseRecipe, load_recipe
from pipeline.remote import pull_cache, push_cache, upload_dataset
from pipeline.stages import write_json_atomic


def save_recipe(recipe: BaseRecipe) -> None:
    """Keep the resolved recipe in the build directory: `tinyforge score BUILD_DIR` rebuilds from it."""
    recipe.build_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(recipe.model_dump(mode="json"), recipe.build_dir / "recipe.json")


@contextmanager
def open_build(recipe_path: str, *, output_root: str | None, name: str | None,
               seed: int | None, dated: bool, wait_for_lock: float) -> Iterator[BaseRecipe]:
    """Load the recipe and hold its build directory for the whole run.

    ``dated`` (scheduled runs) builds ``<name>-<YYYY-MM-DD>`` of the run's
    scheduled day with a seed of that day, so each night adds new records. A
    second run of the same build waits up to ``wait_for_lock`` seconds for the
    first, then fails with a message naming the run that holds it.
    """
    recipe = load_recipe(recipe_path, output_root=output_root, name=name, seed=seed)
    if dated:
        day = run_day(recipe)
        recipe = load_recipe(recipe_path, output_root=output_root, name=f"{recipe.name}-{day.isoformat()}",
                             seed=seed if seed is not None else recipe.seed + int(day.strftime("%Y%m%d")))
    with BuildLock(recipe.build_dir, wait=wait_for_lock, run=flow_run.get_id()):
        get_run_logger().info("build %s -> %s", recipe.build_id, recipe.build_dir)
        save_recipe(recipe)
        storage, started = recipe.storage, time.time()
        if storage.cache_url:
            pull_cache_task(recipe)
        try:
            yield recipe
        finally:
            if storage.cache_url:  # also after a failure: what was generated is shared, not lost
                push_cache_task(recipe, started)
        if storage.publish_to:
            upload_task(recipe)


def _cache(recipe: BaseRecipe) -> ResponseCache:
    return ResponseCache(cache_path(recipe.output_root))


@task(name="pull-cache", cache_policy=NO_CACHE, persist_result=False)
def pull_cache_task(recipe: BaseRecipe) -> int:
    cache = _cache(recipe)
    try:
        n = pull_cache(cache, recipe.storage.cache_url, recipe.storage.options)
    finally:
        cache.close()
    get_run_logger().info("cache: %d completions imported from %s", n, recipe.storage.cache_url)
    return n


@task(name="push-cache", cache_policy=NO_CACHE, persist_result=False)
def push_cache_task(recipe: BaseRecipe, since: float) -> int:
    cache = _cache(recipe)
    try:
        n = push_cache(cache, recipe.storage.cache_url, since, recipe.name, recipe.storage.options)
    finally:
        cache.close()
    get_run_logger().info("cache: %d new completions shared to %s", n, recipe.storage.cache_url)
    return n


@task(name="upload", cache_policy=NO_CACHE, persist_result=False)
def upload_task(recipe: BaseRecipe) -> str:
    url = upload_dataset(recipe.build_dir / "dataset", f"{recipe.storage.publish_to}/{recipe.name}",
                         recipe.storage.options)
    get_run_logger().info("publish: dataset copied to %s", url)
    return url


def run_day(recipe: BaseRecipe) -> date:
    """The day a run was scheduled for, in the schedule's time zone (today for a manual run)."""
    tz = ZoneInfo(recipe.schedule.timezone if recipe.schedule else "UTC")
    when = flow_run.get_scheduled_start_time() or datetime.now(tz)
    return when.astimezone(tz).date()
