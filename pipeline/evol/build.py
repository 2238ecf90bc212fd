"""The Evol-Instruct kind: its stages as plain functions over the build directory, and ``KIND``.

seeds -> (calibrate) -> round-1 -> ... -> round-R -> evolved -> dedup -> score -> publish.

The seeds stage fixes the pool. Each round is one stage made of batches (a
Prefect task run each, under the flow): a batch evolves its share of the pool, eliminates failed
evolutions, answers (or, for math, solves) the survivors, and writes the
survivors, the rejections, and its share of the next round's pool. The
``evolved`` stage gathers the survivors of every round; dedup, difficulty
scores and publishing are shared with the other corpus kinds.

A math pool's gate is a vote of k sampled programs, so a math build also
calibrates it (``pipeline.solving.calibrate_stage``): the same solver on
problems with known answers says how often the gate's answers are right, and
every executed sample is published in the dataset's ``verifier`` configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from contextlib import ExitStack
from functools import partial
from typing import Any

import polars as pl

from pipeline.batches import BatchedStage, Models, batch_ranges
from pipeline.code_metrics import code_fields
from pipeline.stages.decontaminate import decontaminate
from pipeline.stages.dedup import dedup
from pipeline.stages.fluency import fluency
from pipeline.stages.judge import judge, judge_fields
from pipeline.stages.prospect import prospect
from pipeline.stages.score import score
from pipeline.stages.publish import publish_stage as common_publish
from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.difficulty.prospect import COLUMNS as PROSPECT_COLUMNS
from pipeline.evol.evolve import EvolveSettings, MathGate, evolve_batch
from pipeline.evol.operations import JUDGE_TEMPLATE, JUDGE_TEMPLATE_ID, RESPONSE_TEMPLATE_ID, operation
from pipeline.evol.report import evolution_section
from pipeline.evol.seeds import load_seed_pool
from pipeline.exemplars import ExemplarPool, load_pool
from pipeline.fingerprint import declared_fingerprint, digest
from pipeline.kinds import USAGE, Growth, Kind, MixFields, Produced, Runner, run_batched
from pipeline.llm import sampling_params
from pipeline.publish import Published
from pipeline.records import rejected_frame
from pipeline.evol.recipe import EvolInstructRecipe
from pipeline.evol.rubric import INSTRUCTIONS
from pipeline.solving import SOLUTION_TEMPLATE, SOLUTION_TEMPLATE_ID, Rule, shipped_example
from pipeline.solving.calibrate import SAMPLES_SCHEMA, VERIFIER_SCHEMA_ID, said_on_failure, samples_frame
from pipeline.solving.calibrate import sentence as calibration_sentence
from pipeline.solving.calibrate_stage import Calibration, SolverSetup
from pipeline.solving.report import calibration_section
from pipeline.stages import BuildDir, StageResult, concat
from pipeline.stages.base import KindContext

SCHEMA_ID = "evol_instruct.v4"
VERSIONS = {"seeds": 1, "round": 3, "evolved": 2}  # dedup, score, publish: pipeline.stages
# what of the recipe each stage depends on; a round reads `math` only when the pool is math problems
READS = {"seeds": ("seeds",), "round": ("seed", "evolve", "sampling", "response", "response_sampling", "backend",
                                         "response_backend", "math"),
         # the gate's own solver (math pools), so calibration measures exactly what the gate runs
         "calibrate": ("seed", "calibrate", "math.samples", "math.solution_sampling", "math.verify", "backend",
                       "response_backend", "difficulty")}
# A target grows the seed count (candidate i is seed i and its lineage); it cannot change an evolution.
GROWTH = Growth(target="evolve.target", budget="evolve.max_seeds", count="seeds.limit", step="evolve.batch_size")
TARGET_KEYS = (GROWTH.target, GROWTH.budget)
UNFINGERPRINTED = {"evolve.rounds": "how many rounds run; each round's fingerprint covers the rounds before it, "
                                    "so adding rounds reuses the ones already made"}

POOL_SCHEMA = {"id": pl.String, "instruction": pl.String, "root_id": pl.String, "round": pl.Int64,
               "answer": pl.Float64}


def build_dir(recipe: EvolInstructRecipe) -> BuildDir:
    return BuildDir(recipe.build_dir)


def _settings(recipe: EvolInstructRecipe) -> EvolveSettings:
    e = recipe.evolve
    return EvolveSettings(
        seed=recipe.seed, operations=e.operations, assignment=e.assignment, min_words=e.min_words,
        max_words=e.max_words, max_growth=e.max_growth, max_similarity=e.max_similarity,
        max_template_overlap=e.max_template_overlap, judge=e.judge, retry_failed=e.retry_failed,
        evolve_params=sampling_params(recipe.sampling), response_params=sampling_params(recipe.response_sampling),
        response_min_words=recipe.response.min_words, allow_truncated=recipe.response.allow_truncated,
        exemplars=e.exemplars, pool=evolution_exemplars(e.exemplars_path) if e.exemplars else None)


def evolution_exemplars(path: Path) -> ExemplarPool:
    return load_pool(path, "evolutions", ("operation", "parent", "child"))


# --- seeds --------------------------------------------------------------------


def seeds_stage(recipe: EvolInstructRecipe) -> StageResult:
    """Read the seed pool once; every round starts from what this stage stored."""
    build = build_dir(recipe)
    fp = declared_fingerprint(recipe, "seeds", VERSIONS["seeds"], READS["seeds"])
    if (done := build.done("seeds", fp)) is not None:
        return done
    t0 = time.perf_counter()
    cfg = recipe.seeds
    pool = load_seed_pool(cfg.path, cfg.field, cfg.math, cfg.limit)
    items = pl.DataFrame([{"id": s.id, "instruction": s.instruction, "root_id": s.id, "round": 0, "answer": s.answer}
                          for s in pool.seeds], schema=POOL_SCHEMA)
    return build.commit("seeds", fp, {"records": items, "rejected": rejected_frame([]), "pool": items},
                        {"in": items.height, "math": pool.math, "source": pool.source}, time.perf_counter() - t0)


def is_math(seeds: StageResult) -> bool:
    return bool(seeds.stats["math"])


# --- rounds -------------------------------------------------------------------


def _templates(recipe: EvolInstructRecipe, math: bool) -> dict[str, str]:
    used = {op.template_id: op.template for op in (operation(n, math) for n in dict.fromkeys(recipe.evolve.operations))}
    if recipe.evolve.judge:
        used[JUDGE_TEMPLATE_ID] = JUDGE_TEMPLATE
    if recipe.evolve.exemplars:
        pool = evolution_exemplars(recipe.evolve.exemplars_path)
        used[pool.template_id] = pool.describe(recipe.evolve.exemplars, "the same operation's first, each as its "
                                               "parent in the operation's template and the child as the reply")
    if math:
        used[SOLUTION_TEMPLATE_ID] = SOLUTION_TEMPLATE
    else:
        used[RESPONSE_TEMPLATE_ID] = "{instruction}"
    return used


def round_fingerprint(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool) -> str:
    reads, extra = READS["round"], {"round": round_, "in": upstream.fingerprint,
                                    "templates": sorted(_templates(recipe, math))}
    if not math:  # a pool of prose instructions does not depend on the math section
        reads, extra["math"] = tuple(r for r in reads if r != "math"), None
    return declared_fingerprint(recipe, "round", VERSIONS["round"], reads, omit=(*UNFINGERPRINTED, *TARGET_KEYS),
                                **extra)


def round_stage(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool) -> BatchedStage:
    """Round ``round_`` as a batched stage over the pool ``upstream`` left; its tables include the next pool."""
    return BatchedStage(recipe.build_dir, recipe.output_root, f"round-{round_}",
                        round_fingerprint(recipe, round_, upstream, math),
                        batch_ranges(upstream.rows["pool"], recipe.evolve.batch_size),
                        {"pool": POOL_SCHEMA, "samples": SAMPLES_SCHEMA})


def round_work(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool, start: int, stop: int,
               models: Models) -> dict[str, pl.DataFrame]:
    """Evolve items ``start..stop`` of the round's pool: survivors, rejections and their share of the next pool."""
    pool = build_dir(recipe).read(upstream.name, "pool").slice(start, stop - start).to_dicts()
    evolver = models.open(recipe.backend)
    responder = models.open(recipe.responder)
    with ExitStack() as stack:
        gate = _math_gate(recipe, stack) if math else None
        out = evolve_batch(pool, round_, _settings(recipe), evolver, responder, gate)
    next_pool = [{"id": r["id"], "instruction": r["instruction"], "root_id": r["root_id"], "round": r["round"],
                  "answer": r.get("answer")} for r in out.survivors] + out.retry
    return {"records": pl.DataFrame(out.survivors, infer_schema_length=None), "rejected": rejected_frame(out.rejected),
            "pool": pl.DataFrame(next_pool, schema=POOL_SCHEMA), "samples": samples_frame(out.samples)}


def _math_gate(recipe: EvolInstructRecipe, stack: ExitStack) -> MathGate:
    from pipeline.sandbox import Sandbox

    m = recipe.math
    sandbox = stack.enter_context(Sandbox(workers=m.verify.workers, timeout_s=m.verify.timeout_s,
                                          memory_mb=m.verify.memory_mb))
    return MathGate(sampling_params(m.solution_sampling), m.samples, Rule.of(m.verify), m.filter,
                    shipped_example(), sandbox)


def calibration(recipe: EvolInstructRecipe) -> Calibration:
    """Calibration of exactly the solver and vote the solvability gate runs."""
    m = recipe.math
    return Calibration(recipe, recipe.calibrate, SolverSetup(recipe.responder, m.solution_sampling, m.samples, m.verify),
                       READS["calibrate"], batch_size=recipe.evolve.batch_size, difficulty=recipe.difficulty)


def run_round(recipe: EvolInstructRecipe, round_: int, upstream: StageResult, math: bool, runner: Runner,
              usage: dict[str, int]) -> StageResult:
    """One round: its batches (unless the round is done), then the gather; adds what it spent to ``usage``."""
    result, spent = run_batched(runner, round_stage(recipe, round_, upstream, math),
                                partial(round_work, recipe, round_, upstream, math),
                                label=f"round {round_}/{recipe.evolve.rounds}", gather="gather-round",
                                stats={"round": round_})
    for k in usage:
        usage[k] += spent[k]
    runner.log(f"round {round_}: {result.rows['records']} of {upstream.rows['pool']} evolutions survived; "
               f"next pool {result.rows['pool']}")
    return result


def produce(recipe: EvolInstructRecipe, runner: Runner) -> Produced:
    """Seeds, then each round on the survivors of the one before (a round cannot start earlier), then all
    the survivors in one stage."""
    seeds = runner.stage("seeds", seeds_stage, recipe)
    math, usage = is_math(seeds), dict.fromkeys(USAGE, 0)
    calibrated = []
    if math and recipe.calibrate.enabled:
        stage, usage = calibration(recipe).run(runner, calibration_sentence)
        calibrated.append(stage)
    rounds, upstream = [], seeds
    for r in range(1, recipe.evolve.rounds + 1):
        if upstream.rows["pool"] == 0:
            runner.log(f"round {r}: the pool is empty; stopping after {r - 1} rounds")
            break
        upstream = run_round(recipe, r, upstream, math, runner, usage)
        rounds.append(upstream)
    return Produced([seeds, *calibrated, *rounds, runner.stage("evolved", evolved_stage, recipe, seeds, rounds)],
                    usage)


# --- after the rounds -----------------------------------------------------------


def evolved_stage(recipe: EvolInstructRecipe, seeds: StageResult, rounds: list[StageResult]) -> StageResult:
    """Every round's survivors in one table, in candidate order: by seed, then round. More seeds (a target's
    next round) add their lineages after the ones before, so dedup and the target keep what they kept."""
    build = build_dir(recipe)
    fp = digest({"stage": "evolved", "v": VERSIONS["evolved"], "in": [seeds.fingerprint, *(r.fingerprint for r in rounds)]})
    if (done := build.done("evolved", fp)) is not None:
        return done
    records = concat([build.read(r.name) for r in rounds])
    if records.height:
        order = {sid: i for i, sid in enumerate(build.read(seeds.name)["id"].to_list())}
        records = (records.with_columns(pl.col("root_id").replace_strict(order, default=len(order),
                                                                         return_dtype=pl.Int64).alias("_seed"))
                   .sort("_seed", "round", maintain_order=True).drop("_seed"))
    return build.commit("evolved", fp, {"records": records, "rejected": rejected_frame([])},
                        {"in": records.height}, 0.0)


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    keys = ("id", "instruction", "response", "answer", "answer_agreement", "verification", "parent_id", "root_id",
            "round", "operation", "operation_kind", "evolver_model", "responder_model", "prompt",
            "prompt_template_id", "exemplar_ids", "response_template_id", "sampling", "response_sampling", "dedup_cluster",
            "num_words", "response_words", "num_tokens")
    code = r["response"] if r.get("answer") is not None else None  # a math build's responses are programs
    return {"build_id": build_id, **{k: r.get(k) for k in keys}, **code_fields(code),
            "fluency_loss": r.get("fluency_loss"),
            **judge_fields(r, INSTRUCTIONS),
            **{k: r.get(k) for k in (*DIFFICULTY_COLUMNS, *PROSPECT_COLUMNS)}}


def _format_example(r: dict[str, Any]) -> str:
    lang = "python" if r.get("answer") is not None else "text"
    return (f"`{r['id']}` · round {r['round']} · {r['operation']} · from `{r['parent_id']}` (root `{r['root_id']}`)"
            f"\n\n> {r['instruction']}\n\n```{lang}\n{r['response'].rstrip()}\n```")


def publish_stage(recipe: EvolInstructRecipe, stages: list[StageResult], kind: KindContext) -> tuple[Published, bool]:
    build, by_name = build_dir(recipe), {s.name: s for s in stages}
    math = is_math(by_name["seeds"])
    rounds = [s for s in stages if s.name.startswith("round-")]
    seeds = build.read("seeds")

    def section(records: list[dict[str, Any]]) -> str:
        return evolution_section(seeds, [(s.stats["round"], build.read(s.name), build.read(s.name, "rejected"))
                                         for s in rounds], records)

    sections: list[tuple[str, Callable[[list[dict[str, Any]]], str]]] = [("Evolution", section)]
    calibration = by_name["calibrate"].stats["calibration"] if "calibrate" in by_name else None
    if calibration:
        sections.append(("Calibration of the solvability gate", lambda records: calibration_section(calibration)))
    verifier = None
    if math:  # every executed solution sample: the gate's, and calibration's
        samples = concat([build.read(s.name, "samples") for s in (*rounds, by_name.get("calibrate")) if s])
        verifier = {"verifier": (VERIFIER_SCHEMA_ID, [r | {"build_id": recipe.build_id} for r in samples.to_dicts()])}
    with said_on_failure(calibration):
        return common_publish(
            recipe, stages, kind,
            to_record=partial(published_record, build_id=recipe.build_id), templates=_templates(recipe, math),
            format_example=_format_example, length=lambda r: r["num_words"],
            training_text=lambda r: f"{r['instruction']}\n\n{r['response']}", extra_sections=sections,
            default_description="Instructions evolved with Evol-Instruct operations by a small model, with "
                                "responses and full lineage.",
            configs=verifier, notes=[calibration_sentence(calibration)] if calibration else [],
            extra_info={"calibration": calibration} if calibration else None,
        )


KIND = Kind(
    name="evol_instruct", recipe=EvolInstructRecipe, flow_name="evol-instruct", schema_id=SCHEMA_ID,
    text_field="instruction",
    # proxy-model difficulty over (instruction, response): IFD says how much the instruction helps
    produce=produce, stages=(decontaminate(), fluency(), dedup(), judge(),
                             score("instruction", "response"), prospect("instruction", "response")),
    rubric=INSTRUCTIONS, growth=GROWTH, available=lambda stages: stages[0].rows["records"],
    publish=publish_stage,
    # a math pool's response is its verified solution; other responses are prose
    solution_code=lambda r: r["response"] if r.get("answer") is not None else None,
    description="instructions evolved in depth and in breadth, with responses and lineage",
    produce_reads={"seeds": READS["seeds"], "calibrate": READS["calibrate"], "round": READS["round"]},
    unfingerprinted=UNFINGERPRINTED,
    mix_fields=MixFields("instruction", "response"),
)
