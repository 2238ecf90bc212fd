"""Orchestration shared by every corpus flow: batched generation with progress, the result summary."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from prefect import get_run_logger

from flows.artifacts import Progress
from pipeline.publish import Published
from pipeline.stages import StageResult, write_json_atomic


def save_recipe(recipe: Any) -> None:
    """Keep the resolved recipe in the build directory: `tinyforge score BUILD_DIR` rebuilds from it."""
    recipe.build_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(recipe.model_dump(mode="json"), recipe.build_dir / "recipe.json")


def generate_in_batches(recipe: Any, kind: ModuleType, generate_batch: Any) -> dict[str, int]:
    """Run the kind's generation one Prefect task per batch; skip it all when the stage is done.

    Returns what this run spent: model calls, cache hits and completion tokens.
    """
    log = get_run_logger()
    batches = kind.batch_ranges(recipe)
    progress = Progress(recipe.name, "generate", recipe.generate.count)
    usage = {"model_calls": 0, "cache_hits": 0, "completion_tokens": 0}
    if kind.build_dir(recipe).done("generate", kind.generate_fingerprint(recipe)) is not None:
        progress.advance(recipe.generate.count)
        return usage
    for b in range(len(batches)):
        s = generate_batch(recipe, b)
        for k in usage:
            usage[k] += s.get(k, 0)
        pct = progress.advance(s["items"])
        rate = s["completion_tokens"] / s["seconds"] if s["seconds"] else 0.0
        log.info("generate: batch %d/%d %s, %d model calls, %d cache hits, %.0f tok/s (%.0f%% done)",
                 b + 1, len(batches), "reused" if s["skipped"] else "done", s["model_calls"], s["cache_hits"],
                 rate, pct)
    return usage


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
