"""The TinyGSM kind: its stages as plain functions over the build directory, and ``KIND``.

calibrate (batches), generate (batches) -> verify -> decontaminate -> fluency -> dedup -> judge -> score -> publish.
Generation writes a problem from a seed and samples k solutions for it;
verification executes every sample in the sandbox. Calibration solves
problems with known answers with the same solver and vote, so the report can
say how often verification is right (``pipeline.solving.calibrate``).
"""

from __future__ import annotations

from functools import partial

from typing import Any

from pipeline.batches import Models
from pipeline.code_metrics import code_fields
from pipeline.stages.base import KindContext, record_stage
from pipeline.stages.decontaminate import decontaminate
from pipeline.stages.dedup import dedup
from pipeline.stages.fluency import fluency
from pipeline.stages.judge import judge, judge_fields
from pipeline.stages.prospect import prospect
from pipeline.stages.score import score
from pipeline.stages.publish import publish_stage as common_publish
from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.difficulty.prospect import COLUMNS as PROSPECT_COLUMNS
from pipeline.fingerprint import declared_fingerprint
from pipeline.kinds import (
    GENERATE,
    TARGET_KEYS,
    USAGE,
    BatchedGeneration,
    Kind,
    MixFields,
    Produced,
    Records,
    Runner,
    Stage,
)
from pipeline.llm import sampling_params
from pipeline.publish import Published
from pipeline.llm.config import wants_structured_output
from pipeline.tinygsm.recipe import TinyGSMRecipe
from pipeline.tinygsm.rubric import MATH
from pipeline.sandbox import Sandbox
from pipeline.solving import Rule, shipped_example
from pipeline.solving.calibrate import VERIFIER_SCHEMA_ID, said_on_failure, samples_frame
from pipeline.solving.calibrate import sentence as calibration_sentence
from pipeline.solving.calibrate_stage import Calibration, SolverSetup
from pipeline.solving.report import calibration_section
from pipeline.stages import BuildDir, StageResult, concat
from pipeline.text import words
from pipeline.tinygsm.generate import generate_problems
from pipeline.tinygsm.prompts import (
    SOLUTION_TEMPLATE_ID,
    TEMPLATES,
    plan_problem,
    question_template_id,
    rewrite_exemplars,
)
from pipeline.tinygsm.seeds import load_seeds
from pipeline.tinygsm.verify import verify_problems

SCHEMA_ID = "tinygsm.v6"
# calibrate: pipeline.solving.calibrate_stage; dedup, score, publish: pipeline.stages
VERSIONS = {"generate": 1, "verify": 2}  # decontaminate: pipeline.stages
# what of the recipe each stage depends on (the question filter runs inside generation)
READS = {"generate": ("seed", "generate", "seeds", "sampling", "solution_sampling", "filter", "backend"),
         "verify": ("verify",),
         # the solver's own settings, so calibration measures exactly what verification runs
         "calibrate": ("seed", "calibrate", "solution_sampling", "generate.samples", "verify", "backend",
                       "difficulty")}  # difficulty: the learning-percentage bands of the gold problems
UNFINGERPRINTED = {"verify.workers": "how many sandbox workers run the programs, not what they return"}


def generate_fingerprint(recipe: TinyGSMRecipe) -> str:
    return declared_fingerprint(recipe, "generate", VERSIONS["generate"], READS["generate"], omit=TARGET_KEYS,
                                templates=list(_templates(recipe)))


def generate_work(recipe: TinyGSMRecipe, start: int, stop: int, models: Models) -> tuple[Records, Records]:
    """Problems ``start..stop``, each written from a seed problem, with its k sampled solutions."""
    seeds = load_seeds(recipe.seeds)
    specs = [plan_problem(i, recipe.seed, seeds) for i in range(start, stop)]
    g = recipe.generate
    return generate_problems(specs, models.open(recipe.backend), sampling_params(recipe.sampling),
                             sampling_params(recipe.solution_sampling), g.samples,
                             shipped_example(), recipe.filter, wants_structured_output(recipe.backend),
                             rewrite_exemplars(g.exemplars_path) if g.exemplars else None, g.exemplars)


def verify_stage(recipe: TinyGSMRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    cfg = recipe.verify
    samples: list[dict[str, Any]] = []

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        with Sandbox(workers=cfg.workers, timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb) as sandbox:
            kept, rejected = verify_problems(records, sandbox, Rule.of(cfg), samples)
        programs = sum(sum(c is not None for c in r["solutions"]) for r in records) + len(kept)
        return kept, rejected, {"programs_run": programs}

    return record_stage(recipe, "verify", upstream, version=VERSIONS["verify"], reads=READS["verify"],
                        omit=tuple(UNFINGERPRINTED), run=run, tables=lambda: {"samples": samples_frame(samples)})


# --- calibration ------------------------------------------------------------------


def calibration(recipe: TinyGSMRecipe) -> Calibration:
    """Calibration of exactly the solver and vote the verify stage runs."""
    setup = SolverSetup(recipe.backend, recipe.solution_sampling, recipe.generate.samples, recipe.verify)
    return Calibration(recipe, recipe.calibrate, setup, READS["calibrate"], omit=tuple(UNFINGERPRINTED),
                       batch_size=recipe.generate.batch_size, difficulty=recipe.difficulty)


def produce(recipe: TinyGSMRecipe, runner: Runner) -> Produced:
    """Calibration (when on), then generation; the record stages follow generation."""
    stages, usage = [], dict.fromkeys(USAGE, 0)
    if recipe.calibrate.enabled:
        calibrated, usage = calibration(recipe).run(runner, calibration_sentence)
        stages.append(calibrated)
    generated = GENERATION(recipe, runner)
    return Produced([*stages, *generated.stages], {k: usage[k] + generated.usage[k] for k in usage})


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    return {
        "id": r["id"], "build_id": build_id, "question": r["question"], "code": r["code"], "answer": r["answer"],
        "answer_agreement": r["answer_agreement"], "answer_votes": r["answer_votes"], "samples": r["samples"],
        "seed_id": r["seed_id"], "exemplar_ids": r.get("exemplar_ids") or [],
        "parent_id": r["seed_id"], "prompt": r["prompt"], "prompt_template_id": r["prompt_template_id"],
        "solution_template_id": r["solution_template_id"], "generator_model": r["generator_model"],
        "sampling": r["sampling"], "solution_sampling": r["solution_sampling"], "verification": r["verification"],
        "dedup_cluster": r["dedup_cluster"], "num_words": len(words(r["question"])), "num_tokens": r["num_tokens"],
        **code_fields(r["code"]), "fluency_loss": r.get("fluency_loss"), **judge_fields(r, MATH),
        **{k: r.get(k) for k in (*DIFFICULTY_COLUMNS, *PROSPECT_COLUMNS)},
    }


def _format_example(r: dict[str, Any]) -> str:
    return (f"`{r['id']}` · answer {r['answer']:g} · agreement {r['answer_agreement']:.0%} · seed {r['seed_id']}"
            f"\n\n```python\n{r['code'].rstrip()}\n```")


def _templates(recipe: TinyGSMRecipe) -> dict[str, str]:
    """The prompt templates this recipe's build uses, by id (the exemplar pool is one)."""
    q = question_template_id(wants_structured_output(recipe.backend))
    used = {q: TEMPLATES[q], SOLUTION_TEMPLATE_ID: TEMPLATES[SOLUTION_TEMPLATE_ID]}
    if recipe.generate.exemplars:
        pool = rewrite_exemplars(recipe.generate.exemplars_path)
        used[pool.template_id] = pool.describe(recipe.generate.exemplars, "each as a request in the question "
                                               "template and the rewrite as the reply")
    return used


def publish_stage(recipe: TinyGSMRecipe, stages: list[StageResult], kind: KindContext) -> tuple[Published, bool]:
    build = BuildDir(recipe.build_dir)
    by_name = {s.name: s for s in stages}
    samples = concat([build.read(n, "samples") for n in ("verify", "calibrate") if n in by_name])
    verifier = [r | {"build_id": recipe.build_id} for r in samples.to_dicts()]
    calibration = by_name["calibrate"].stats["calibration"] if "calibrate" in by_name else None
    with said_on_failure(calibration):
        return _publish(recipe, stages, kind, verifier, calibration)


def _publish(recipe: TinyGSMRecipe, stages: list[StageResult], kind: KindContext, verifier: list[dict[str, Any]],
             calibration: dict[str, Any] | None) -> tuple[Published, bool]:
    sections = [("Calibration", lambda records: calibration_section(calibration))] if calibration else []
    return common_publish(
        recipe, stages, kind,
        to_record=partial(published_record, build_id=recipe.build_id),
        templates=_templates(recipe),
        format_example=_format_example, length=lambda r: r["num_words"],
        training_text=lambda r: f"{r['question']}\n\n{r['code']}",
        default_description="TinyGSM-style grade-school math problems with Python solutions verified by execution.",
        extra_sections=sections, configs={"verifier": (VERIFIER_SCHEMA_ID, verifier)},
        notes=[calibration_sentence(calibration)] if calibration else [],
        extra_info={"calibration": calibration},
    )


GENERATION = BatchedGeneration(generate_fingerprint, generate_work)

KIND = Kind(
    name="tinygsm", recipe=TinyGSMRecipe, flow_name="tinygsm", schema_id=SCHEMA_ID,
    text_field="question",
    produce=produce,
    stages=(Stage("verify", verify_stage, READS["verify"], split="map"),
            decontaminate(),
            fluency(), dedup(score_field="answer_agreement"), judge(),
            score("question", "code"), prospect("question", "code")),  # proxy-model difficulty of the code, given the question
    publish=publish_stage, solution_code=lambda r: r["code"], rubric=MATH, growth=GENERATE,
    description="grade-school math word problems with Python solutions verified by execution",
    produce_reads={"calibrate": READS["calibrate"], "generate": READS["generate"]}, unfingerprinted=UNFINGERPRINTED,
    mix_fields=MixFields("question", "code"),
)
