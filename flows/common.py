"""Orchestration shared by every corpus flow: opening a build, batches with progress, the summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run

from flows.artifacts import Progress
from pipeline.errors import RecipeError
from pipeline.llm import ResponseCache, cache_path
from pipeline.lock import BuildLock
from pipeline.publish import Published
from pipeline.recipe import load_recipe
from pipeline.remote import pull_cache, push_cache, upload_dataset
from pipeline.stages import StageResult, write_json_atomic

R = TypeVar("R")
USAGE = ("model_calls", "cache_hits", "completion_tokens")


def save_recipe(recipe: Any) -> None:
    """Keep the resolved recipe in the build directory: `tinyforge score BUILD_DIR` rebuilds from it."""
    recipe.build_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(recipe.model_dump(mode="json"), recipe.build_dir / "recipe.json")


@contextmanager
def open_build(recipe_type: type[R], recipe_path: str, *, output_root: str | None, name: str | None,
               seed: int | None, dated: bool, wait_for_lock: float) -> Iterator[R]:
    """Load the recipe and hold its build directory for the whole run.

    ``dated`` (scheduled runs) builds ``<name>-<YYYY-MM-DD>`` of the run's
    scheduled day with a seed of that day, so each night adds new records. A
    second run of the same build waits up to ``wait_for_lock`` seconds for the
    first, then fails with a message naming the run that holds it.
    """
    recipe = load_recipe(recipe_path, output_root=output_root, name=name, seed=seed)
    if not isinstance(recipe, recipe_type):
        raise RecipeError(f"{recipe_path} is a {recipe.kind!r} recipe, not {recipe_type.model_fields['kind'].default}")
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


def _cache(recipe: Any) -> ResponseCache:
    return ResponseCache(cache_path(recipe.output_root))


@task(name="pull-cache", cache_policy=NO_CACHE, persist_result=False)
def pull_cache_task(recipe: Any) -> int:
    cache = _cache(recipe)
    try:
        n = pull_cache(cache, recipe.storage.cache_url, recipe.storage.options)
    finally:
        cache.close()
    get_run_logger().info("cache: %d completions imported from %s", n, recipe.storage.cache_url)
    return n


@task(name="push-cache", cache_policy=NO_CACHE, persist_result=False)
def push_cache_task(recipe: Any, since: float) -> int:
    cache = _cache(recipe)
    try:
        n = push_cache(cache, recipe.storage.cache_url, since, recipe.name, recipe.storage.options)
    finally:
        cache.close()
    get_run_logger().info("cache: %d new completions shared to %s", n, recipe.storage.cache_url)
    return n


@task(name="upload", cache_policy=NO_CACHE, persist_result=False)
def upload_task(recipe: Any) -> str:
    url = upload_dataset(recipe.build_dir / "dataset", f"{recipe.storage.publish_to}/{recipe.name}",
                         recipe.storage.options)
    get_run_logger().info("publish: dataset copied to %s", url)
    return url


def run_day(recipe: Any) -> date:
    """The day a run was scheduled for, in the schedule's time zone (today for a manual run)."""
    tz = ZoneInfo(recipe.schedule.timezone if recipe.schedule else "UTC")
    when = flow_run.get_scheduled_start_time() or datetime.now(tz)
    return when.astimezone(tz).date()


def run_batches(submit: Callable[[int], Any], batches: int, progress: Progress, label: str) -> dict[str, int]:
    """Submit every batch to the flow's task runner and gather their usage as they finish.

    Batches are the unit of distribution: the default runner runs them one at
    a time in this process (the embedded engine already uses every core for
    one batch), a Dask runner spreads them over its workers.
    """
    log = get_run_logger()
    usage = dict.fromkeys(USAGE, 0)
    futures = [submit(b) for b in range(batches)]
    for finished, future in enumerate(as_completed(futures), start=1):
        s = future.result()
        for k in usage:
            usage[k] += s.get(k, 0)
        pct = progress.advance(s["items"])
        rate = s["completion_tokens"] / s["seconds"] if s["seconds"] else 0.0
        log.info("%s: batch %d %s (%d/%d), %d model calls, %d cache hits, %.0f tok/s (%.0f%% done)",
                 label, s["batch"], "reused" if s["skipped"] else "done", finished, batches, s["model_calls"],
                 s["cache_hits"], rate, pct)
    return usage


def generate_in_batches(recipe: Any, kind: Any, generate_batch: Any) -> dict[str, int]:
    """The kind's generation, one Prefect task per batch; nothing to run when the stage is done.

    Returns what this run spent: model calls, cache hits and completion tokens.
    """
    progress = Progress(recipe.name, "generate", recipe.generate.count)
    if kind.build_dir(recipe).done("generate", kind.generate_fingerprint(recipe)) is not None:
        progress.advance(recipe.generate.count)
        return dict.fromkeys(USAGE, 0)
    return run_batches(lambda b: generate_batch.submit(recipe, b), len(kind.batch_ranges(recipe)), progress,
                       "generate")


def log_stages(stages: list[StageResult]) -> None:
    log = get_run_logger()
    for s in stages:
        log.info("%s: %s, %d kept, %d rejected", s.name, "reused" if s.skipped else "ran", s.rows["records"],
                 s.rows.get("rejected", 0))


def build_summary(recipe: Any, published: Published, reused: bool, stages: list[StageResult],
                  run_usage: dict[str, int]) -> dict[str, Any]:
    get_run_logger().info("publish: %s %s", "reused" if reused else "wrote", published.path)
    return {
        "build_id": recipe.build_id,
        "dataset": str(published.path),
        "report": str(published.path / "report.md"),
        "splits": {k: v["rows"] for k, v in published.manifest["splits"].items()},
        "run_usage": run_usage,
        "stages": {s.name: "reused" if s.skipped else "ran" for s in stages}
        | {"publish": "reused" if reused else "ran"},
    }
