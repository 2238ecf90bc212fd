"""Evol-Instruct build flow: seeds -> round 1..R -> evolved -> dedup -> score -> publish.

Each round is one Prefect task per batch of the pool; a round starts only
when the one before it has finished, because it evolves that round's
survivors (and the parents whose evolution failed, retried).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import Progress, publish_build_artifacts
from flows.common import USAGE, build_summary, log_stages, open_build, run_batches
from flows.runners import task_runner
from pipeline.evol import build as evo
from pipeline.recipe import EvolInstructRecipe
from pipeline.stages import StageResult

_task = task(cache_policy=NO_CACHE, persist_result=False)

seeds_stage = _task(evo.seeds_stage, name="seeds")
finish_round = _task(evo.finish_round, name="gather-round")
evolved_stage = _task(evo.evolved_stage, name="evolved")
dedup_stage = _task(evo.dedup_stage, name="dedup")
score_stage = _task(evo.score_stage, name="score")
publish_stage = _task(evo.publish_stage, name="publish")


@_task(task_run_name="round-{round_}-batch-{batch}")
def round_batch(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool, batch: int,
                ) -> dict[str, Any]:
    return evo.round_batch(recipe, round_, upstream, math, batch)


def run_round(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool,
              usage: dict[str, int]) -> StageResult:
    fp = evo.round_fingerprint(recipe, round_, upstream, math)
    if evo.build_dir(recipe).done(f"round-{round_}", fp) is None:
        progress = Progress(recipe.name, f"round-{round_}", upstream.rows["pool"])
        spent = run_batches(lambda b: round_batch.submit(recipe, round_, upstream, math, b),
                            len(evo.round_batches(recipe, upstream)), progress,
                            f"round {round_}/{recipe.evolve.rounds}")
        for k in usage:
            usage[k] += spent[k]
    result = finish_round(recipe, round_, upstream, math)
    get_run_logger().info("round %d: %d of %d evolutions survived; next pool %d", round_, result.rows["records"],
                          upstream.rows["pool"], result.rows["pool"])
    return result


@flow(name="evol-instruct", task_runner=task_runner(), log_prints=True)
def evolve_flow(recipe_path: str, output_root: str | None = None, name: str | None = None,
                seed: int | None = None, dated: bool = False, wait_for_lock: float = 0.0) -> dict[str, Any]:
    """Evolve a pool of instructions over several rounds; returns where the dataset is and what it cost.

    Parameters besides the recipe override it for this run (see ``flows.common.open_build``).
    """
    with open_build(EvolInstructRecipe, recipe_path, output_root=output_root, name=name, seed=seed, dated=dated,
                    wait_for_lock=wait_for_lock) as recipe:
        return _build(recipe)


def _build(recipe: EvolInstructRecipe) -> dict[str, Any]:
    seeds = seeds_stage(recipe)
    math = evo.is_math(seeds)
    usage = dict.fromkeys(USAGE, 0)
    rounds, upstream = [], seeds
    for r in range(1, recipe.evolve.rounds + 1):
        if upstream.rows["pool"] == 0:
            get_run_logger().warning("round %d: the pool is empty; stopping after %d rounds", r, r - 1)
            break
        upstream = run_round(recipe, r, upstream, math, usage)
        rounds.append(upstream)
    evolved = evolved_stage(recipe, rounds)
    deduped = dedup_stage(recipe, evolved)
    scored = score_stage(recipe, deduped)
    stages = [seeds, *rounds, evolved, deduped, scored]
    log_stages(stages)
    published, reused = publish_stage(recipe, stages, math)
    publish_build_artifacts(recipe.name, published)
    return build_summary(recipe, published, reused, stages, usage)
