"""The TinyStories kind: its stages as plain functions over the build directory, and ``KIND``.

generate (batches) -> filter -> dedup -> score -> publish. Each stage reads
its input from the build directory, writes its output there atomically and
returns a :class:`~pipeline.stages.StageResult`; a stage whose fingerprint
matches its existing output returns at once. ``pipeline.kinds.run_build``
runs them in order; ``flows/build.py`` runs the same steps as Prefect tasks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import polars as pl

from pipeline.batches import Models
from pipeline.stages.base import KindContext, Verdicts, iter_rows, table_stage
from pipeline.stages.decontaminate import decontaminate
from pipeline.stages.dedup import dedup
from pipeline.stages.fluency import fluency
from pipeline.stages.judge import judge, judge_fields
from pipeline.stages.score import score
from pipeline.stages.publish import publish_stage as common_publish
from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.fingerprint import declared_fingerprint
from pipeline.kinds import GENERATE, TARGET_KEYS, BatchedGeneration, Kind, MixFields, Records, Stage
from pipeline.llm import sampling_params
from pipeline.publish import Published
from pipeline.tinystories.recipe import TinyStoriesRecipe
from pipeline.tinystories.rubric import STORIES
from pipeline.stages import StageResult
from pipeline.text import words
from pipeline.tinystories.filters import check_story
from pipeline.tinystories.generate import generate_stories
from pipeline.tinystories.prompts import (
    SENTENCE_TEMPLATE_ID,
    SENTENCE_TEXT,
    TEMPLATES,
    instruction_text,
    plan_stories,
    story_exemplars,
)
from pipeline.tinystories.vocab import load_vocabulary

SCHEMA_ID = "tinystories.v4"
# Bump a stage's version when its logic changes, so old outputs are not reused
# (the shared stages, dedup, score and publish, carry their own in pipeline.stages).
VERSIONS = {"generate": 1, "filter": 1}
READS = {"generate": ("seed", "generate", "sampling", "backend"), "filter": ("filter",)}  # what of the recipe


# --- generate -------------------------------------------------------------------


def generate_fingerprint(recipe: TinyStoriesRecipe) -> str:
    return declared_fingerprint(recipe, "generate", VERSIONS["generate"], READS["generate"], omit=TARGET_KEYS,
                                templates=list(_templates(recipe)))


def _templates(recipe: TinyStoriesRecipe) -> dict[str, str]:
    """The prompt templates this recipe's build uses, by id (the exemplar pool is one)."""
    used = dict(TEMPLATES)
    if recipe.generate.sentence_fraction:
        used[SENTENCE_TEMPLATE_ID] = SENTENCE_TEXT
    if recipe.generate.exemplars:
        pool = story_exemplars(recipe.generate.exemplars_path)
        used[pool.template_id] = pool.describe(recipe.generate.exemplars, "each as a request in the story "
                                               "template and the story as the reply")
    return used


def generate_work(recipe: TinyStoriesRecipe, start: int, stop: int, models: Models) -> tuple[Records, Records]:
    """Stories ``start..stop``: their specs (words, features) drawn from the per-item seeds, then generated."""
    vocab = load_vocabulary(recipe.generate.vocab_dir)
    specs = plan_stories(start, stop, recipe.seed, recipe.generate, vocab)
    g = recipe.generate
    pool = story_exemplars(g.exemplars_path) if g.exemplars else None
    return generate_stories(specs, models.open(recipe.backend), sampling_params(recipe.sampling), pool, g.exemplars)


# --- filter -----------------------------------------------------------------------


FILTER_COLUMNS = ("story", "finish_reason", "words", "sentence")  # what check_story reads


def filter_stage(recipe: TinyStoriesRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    vocab = load_vocabulary(recipe.generate.vocab_dir)

    def decide(frame: pl.DataFrame) -> Verdicts:
        checks = (check_story(r, vocab, recipe.filter) for r in iter_rows(frame, FILTER_COLUMNS))
        return Verdicts(rejected={i: v for i, v in enumerate(checks) if v is not None})

    return table_stage(recipe, "filter", upstream, version=VERSIONS["filter"], reads=READS["filter"],
                       decide=decide, text_field=kind.text_field, columns=FILTER_COLUMNS, extra={"vocab": vocab.digest})


# --- publish ----------------------------------------------------------------------


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    """A stage record projected onto the shard contract (tinystories.v4)."""
    return {
        "id": r["id"], "build_id": build_id, "story": r["story"], "summary": r["summary"], "words": r["words"],
        "features": r["features"], "sentence": r.get("sentence"), "instruction_text": instruction_text(r), "prompt": r["prompt"], "prompt_template_id": r["prompt_template_id"],
        "exemplar_ids": r.get("exemplar_ids") or [],
        "summary_template_id": r["summary_template_id"], "generator_model": r["generator_model"],
        "sampling": r["sampling"], "parent_id": None, "verification": None, "dedup_cluster": r["dedup_cluster"],
        "num_words": len(words(r["story"])), "num_tokens": r["num_tokens"], "finish_reason": r["finish_reason"],
        "fluency_loss": r.get("fluency_loss"), **judge_fields(r, STORIES),
        **{k: r.get(k) for k in DIFFICULTY_COLUMNS},
    }


def _format_example(r: dict[str, Any]) -> str:
    meta = f"`{r['id']}` · words: {', '.join(r['words'])} · features: {', '.join(r['features']) or 'none'}"
    body = "\n".join(f"> {line}" if line else ">" for line in r["story"].splitlines())
    summary = f"\n\nSummary: {r['summary']}" if r.get("summary") else ""
    return f"{meta}\n\n{body}{summary}"


def publish_stage(recipe: TinyStoriesRecipe, stages: list[StageResult], kind: KindContext) -> tuple[Published, bool]:
    """Publish the last stage's records. Returns (published dataset, whether it was reused)."""
    return common_publish(
        recipe, stages, kind,
        to_record=partial(published_record, build_id=recipe.build_id), templates=_templates(recipe),
        format_example=_format_example, length=lambda r: r["num_words"],
        training_text=lambda r: r["story"],
        default_description="TinyStories-style short stories for small language models.",
    )


KIND = Kind(
    name="tinystories", recipe=TinyStoriesRecipe, flow_name="tinystories", schema_id=SCHEMA_ID,
    text_field="story",
    produce=BatchedGeneration(generate_fingerprint, generate_work),
    # proxy-model difficulty: the instruction is the prompt, the response the story
    stages=(Stage("filter", filter_stage, READS["filter"], split="map"), decontaminate(), fluency(), dedup(), judge(),
            score("prompt", "story")),
    rubric=STORIES, growth=GENERATE,
    publish=publish_stage,
    description="TinyStories-style short stories in a small child's vocabulary",
    produce_reads={"generate": READS["generate"]},
    mix_fields=MixFields("prompt", "story", text="response"),
)
