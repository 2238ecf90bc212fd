"""The TinyGSM kind: its stages as plain functions over the build directory, and ``KIND``.

generate (batches) -> verify -> decontaminate -> dedup -> score -> publish.
Generation writes a problem from a seed and samples k solutions for it;
verification executes every sample in the sandbox.
"""

from __future__ import annotations

from typing import Any


from pipeline.batches import Models
from pipeline.common_stages import dedup, record_stage, score
from pipeline.common_stages import publish_stage as common_publish
from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.decontam import decontaminate, load_eval_sets
from pipeline.fingerprint import declared_fingerprint
from pipeline.kinds import BatchedGeneration, Kind, Records, Stage, register
from pipeline.llm import sampling_params
from pipeline.publish import Published
from pipeline.recipe import TinyGSMRecipe, wants_structured_output
from pipeline.sandbox import Sandbox
from pipeline.solving import shipped_example
from pipeline.stages import StageResult
from pipeline.text import words
from pipeline.tinygsm.generate import generate_problems
from pipeline.tinygsm.prompts import SOLUTION_TEMPLATE_ID, TEMPLATES, plan_problem, question_template_id
from pipeline.tinygsm.seeds import load_seeds
from pipeline.tinygsm.verify import verify_problems

SCHEMA_ID = "tinygsm.v2"
VERSIONS = {"generate": 1, "verify": 1, "decontaminate": 2}  # dedup, score, publish: pipeline.common_stages
# what of the recipe each stage depends on (the question filter runs inside generation)
READS = {"generate": ("seed", "generate", "seeds", "sampling", "solution_sampling", "filter", "backend"),
         "verify": ("verify",), "decontaminate": ("decontaminate", "dedup")}

UNFINGERPRINTED = {"verify.workers": "how many sandbox workers run the programs, not what they return"}


def generate_fingerprint(recipe: TinyGSMRecipe) -> str:
    return declared_fingerprint(recipe, "generate", VERSIONS["generate"], READS["generate"],
                                templates=_templates(recipe))


def generate_work(recipe: TinyGSMRecipe, start: int, stop: int, models: Models) -> tuple[Records, Records]:
    """Problems ``start..stop``, each written from a seed problem, with its k sampled solutions."""
    seeds = load_seeds(recipe.seeds)
    specs = [plan_problem(i, recipe.seed, seeds) for i in range(start, stop)]
    return generate_problems(specs, models.open(recipe.backend), sampling_params(recipe.sampling),
                             sampling_params(recipe.solution_sampling), recipe.generate.samples,
                             shipped_example(), recipe.filter, wants_structured_output(recipe.backend))


def verify_stage(recipe: TinyGSMRecipe, upstream: StageResult) -> StageResult:
    cfg = recipe.verify

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        with Sandbox(workers=cfg.workers, timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb) as sandbox:
            kept, rejected = verify_problems(records, sandbox, cfg.min_agreement)
        programs = sum(sum(c is not None for c in r["solutions"]) for r in records) + len(kept)
        return kept, rejected, {"programs_run": programs}

    return record_stage(recipe, "verify", upstream, version=VERSIONS["verify"], reads=READS["verify"],
                        omit=tuple(UNFINGERPRINTED), run=run)


def decontaminate_stage(recipe: TinyGSMRecipe, upstream: StageResult) -> StageResult:
    cfg = recipe.decontaminate

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        evals = load_eval_sets([(e.path, e.field) for e in cfg.eval_sets], cfg.ngram)
        near = cfg.near_duplicate_threshold if cfg.near_duplicates else None
        kept, rejected = decontaminate(records, evals, "question", near_threshold=near,
                                       num_perm=recipe.dedup.num_perm, ngram=recipe.dedup.ngram)
        return kept, rejected, {"eval_texts": len(evals.texts), "eval_ngrams": len(evals.ngrams)}

    return record_stage(recipe, "decontaminate", upstream, version=VERSIONS["decontaminate"],
                        reads=READS["decontaminate"], run=run)


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    return {
        "id": r["id"], "build_id": build_id, "question": r["question"], "code": r["code"], "answer": r["answer"],
        "answer_agreement": r["answer_agreement"], "samples": r["samples"], "seed_id": r["seed_id"],
        "parent_id": r["seed_id"], "prompt": r["prompt"], "prompt_template_id": r["prompt_template_id"],
        "solution_template_id": r["solution_template_id"], "generator_model": r["generator_model"],
        "sampling": r["sampling"], "solution_sampling": r["solution_sampling"], "verification": r["verification"],
        "dedup_cluster": r["dedup_cluster"], "num_words": len(words(r["question"])), "num_tokens": r["num_tokens"],
        **{k: r.get(k) for k in DIFFICULTY_COLUMNS},
    }


def _format_example(r: dict[str, Any]) -> str:
    return (f"`{r['id']}` · answer {r['answer']:g} · agreement {r['answer_agreement']:.0%} · seed {r['seed_id']}"
            f"\n\n```python\n{r['code'].rstrip()}\n```")


def _templates(recipe: TinyGSMRecipe) -> list[str]:
    """The prompt templates this recipe's build uses."""
    return [question_template_id(wants_structured_output(recipe.backend)), SOLUTION_TEMPLATE_ID]


def publish_stage(recipe: TinyGSMRecipe, stages: list[StageResult]) -> tuple[Published, bool]:
    return common_publish(
        recipe, stages, 
        to_record=lambda r: published_record(r, recipe.build_id),
        templates={t: TEMPLATES[t] for t in _templates(recipe)}, 
        format_example=_format_example, length=lambda r: r["num_words"],
        training_text=lambda r: f"{r['question']}\n\n{r['code']}",
        default_description="TinyGSM-style grade-school math problems with Python solutions verified by execution.",
    )


KIND = register(Kind(
    name="tinygsm", recipe=TinyGSMRecipe, flow_name="tinygsm", schema_id=SCHEMA_ID,
    text_field="question",
    produce=BatchedGeneration(generate_fingerprint, generate_work),
    stages=(Stage("verify", verify_stage, READS["verify"]),
            Stage("decontaminate", decontaminate_stage, READS["decontaminate"]),
            dedup(score_field="answer_agreement"),
            score(lambda r: (r["question"], r["code"]))),  # proxy-model difficulty of the code, given the question
    publish=publish_stage, solution_code=lambda r: r["code"],
    description="grade-school math word problems with Python solutions verified by execution",
    produce_reads={"generate": READS["generate"]}, unfingerprinted=UNFINGERPRINTED,
))
