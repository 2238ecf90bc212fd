"""The stages of a TinyStories build as plain functions over the build directory.

generate -> filter -> dedup -> publish. Each stage reads its input from the
build directory, writes its output there atomically and returns a
:class:`~pipeline.stages.StageResult`; a stage whose fingerprint matches its
existing output returns at once. Orchestration (Prefect) lives in ``flows/``.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from pipeline.dedup import dedup_records
from pipeline.fingerprint import digest
from pipeline.llm import CachedBackend, ResponseCache, cache_path, load_backend, sampling_params
from pipeline.publish import MANIFEST, Published, publish_dataset
from pipeline.recipe import TinyStoriesRecipe
from pipeline.records import rejected_frame
from pipeline.report import pick_examples, render_card, render_report
from pipeline.schema import load_schema
from pipeline.shards import load_manifest
from pipeline.stages import BuildDir, StageResult, concat
from pipeline.text import words
from pipeline.tinystories.filters import filter_stories
from pipeline.tinystories.generate import generate_stories
from pipeline.tinystories.prompts import STORY_TEMPLATE_ID, SUMMARY_TEMPLATE_ID, TEMPLATES, plan_stories
from pipeline.tinystories.vocab import load_vocabulary

SCHEMA_ID = "tinystories.v1"
# Bump a stage's version when its logic changes, so old outputs are not reused.
VERSIONS = {"generate": 1, "filter": 1, "dedup": 1, "publish": 1}

FIELD_DOCS = {
    "id": "content hash of the normalised story (16 hex digits)",
    "build_id": "the build that published the record",
    "story": "the story text",
    "summary": "a one-sentence summary, where the recipe asked for one (else null)",
    "words": "the required [verb, noun, adjective]",
    "features": "story features asked for (Dialogue, BadEnding, MoralValue, Twist, Foreshadowing, Conflict)",
    "prompt / prompt_template_id / summary_template_id": "the exact prompt and the templates' ids",
    "generator_model / sampling": "model id and sampling parameters, seed and sample index included",
    "parent_id / verification": "null for stories (used by evolved and verified corpora)",
    "dedup_cluster": "id of the record kept for this record's duplicate cluster",
    "num_words / num_tokens / finish_reason": "story length in words and generator tokens; why generation stopped",
}


def build_dir(recipe: TinyStoriesRecipe) -> BuildDir:
    return BuildDir(recipe.build_dir)


# --- generate -------------------------------------------------------------------


def generate_fingerprint(recipe: TinyStoriesRecipe) -> str:
    p = recipe.fingerprint_payload()
    return digest({"stage": "generate", "v": VERSIONS["generate"], "seed": recipe.seed, "generate": p["generate"],
                   "sampling": p["sampling"], "backend": p["backend"],
                   "templates": [STORY_TEMPLATE_ID, SUMMARY_TEMPLATE_ID]})


def batch_ranges(recipe: TinyStoriesRecipe) -> list[tuple[int, int]]:
    n, size = recipe.generate.count, recipe.generate.batch_size
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def generate_batch(recipe: TinyStoriesRecipe, batch: int) -> dict[str, Any]:
    """Generate one batch of stories into the stage's parts; a finished batch is skipped.

    Returns this run's usage for the batch: model calls, cache hits, tokens.
    """
    fp = generate_fingerprint(recipe)
    parts = build_dir(recipe).parts("generate", fp)
    start, stop = batch_ranges(recipe)[batch]
    if parts.has(batch):
        return {"batch": batch, "stories": stop - start, "skipped": True, "model_calls": 0, "cache_hits": 0,
                "completion_tokens": 0, "seconds": 0.0}
    t0 = time.perf_counter()
    vocab = load_vocabulary(recipe.generate.vocab_dir)
    specs = plan_stories(start, stop, recipe.seed, recipe.generate, vocab)
    cache = ResponseCache(cache_path(recipe.output_root))
    try:
        backend = CachedBackend(load_backend(recipe.backend), cache)
        records, rejected = generate_stories(specs, backend, sampling_params(recipe.sampling))
    finally:
        cache.close()
    seconds = time.perf_counter() - t0
    stats = {"batch": batch, "stories": stop - start, "skipped": False, **backend.stats.as_dict(),
             "seconds": seconds}
    parts.write(batch, {"records": pl.DataFrame(records, infer_schema_length=None),
                        "rejected": rejected_frame(rejected)}, stats)
    return stats


def finish_generate(recipe: TinyStoriesRecipe) -> StageResult:
    """Gather the finished batches into the generate stage's output."""
    fp = generate_fingerprint(recipe)
    build = build_dir(recipe)
    if (done := build.done("generate", fp)) is not None:
        return done
    parts = build.parts("generate", fp)
    n = len(batch_ranges(recipe))
    missing = [b for b in range(n) if not parts.has(b)]
    if missing:
        raise RuntimeError(f"generate: batches {missing} are not finished")
    batch_stats = [parts.stats(b) for b in range(n)]
    usage = {k: sum(s.get(k, 0) for s in batch_stats)
             for k in ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens")}
    records, rejected = parts.read(range(n), "records"), parts.read(range(n), "rejected")
    result = build.commit("generate", fp, {"records": records, "rejected": rejected},
                          {"in": recipe.generate.count, "usage": usage,
                           "rejected_by_reason": _reasons(rejected)},
                          sum(s["seconds"] for s in batch_stats))
    build.clear_parts("generate")
    return result


def _reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    return dict(rejected.group_by("reason").len().sort("reason").iter_rows())


# --- filter and dedup -------------------------------------------------------------


def filter_stage(recipe: TinyStoriesRecipe, upstream: StageResult) -> StageResult:
    build = build_dir(recipe)
    vocab = load_vocabulary(recipe.generate.vocab_dir)
    fp = digest({"stage": "filter", "v": VERSIONS["filter"], "in": upstream.fingerprint,
                 "filter": recipe.filter.model_dump(mode="json"), "vocab": vocab.digest})
    if (done := build.done("filter", fp)) is not None:
        return done
    t0 = time.perf_counter()
    records = build.read(upstream.name).to_dicts()
    kept, rejected = filter_stories(records, vocab, recipe.filter)
    rej = rejected_frame(rejected)
    return build.commit("filter", fp, {"records": _frame(kept, upstream, build), "rejected": rej},
                        {"in": len(records), "rejected_by_reason": _reasons(rej)}, time.perf_counter() - t0)


def dedup_stage(recipe: TinyStoriesRecipe, upstream: StageResult) -> StageResult:
    build = build_dir(recipe)
    cfg = recipe.dedup
    fp = digest({"stage": "dedup", "v": VERSIONS["dedup"], "in": upstream.fingerprint,
                 "dedup": cfg.model_dump(mode="json")})
    if (done := build.done("dedup", fp)) is not None:
        return done
    t0 = time.perf_counter()
    records = build.read(upstream.name).to_dicts()
    if cfg.enabled:
        kept, rejected = dedup_records(records, text_field="story", threshold=cfg.threshold,
                                       num_perm=cfg.num_perm, ngram=cfg.ngram)
    else:
        kept, rejected = [{**r, "dedup_cluster": r["id"]} for r in records], []
    rej = rejected_frame(rejected)
    return build.commit("dedup", fp, {"records": _frame(kept, upstream, build), "rejected": rej},
                        {"in": len(records), "rejected_by_reason": _reasons(rej)}, time.perf_counter() - t0)


def _frame(rows: list[dict[str, Any]], upstream: StageResult, build: BuildDir) -> pl.DataFrame:
    if rows:
        return pl.DataFrame(rows, infer_schema_length=None)
    return build.read(upstream.name).clear()  # keep the columns even when nothing survives


# --- publish ----------------------------------------------------------------------


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    """A stage record projected onto the shard contract (tinystories.v1)."""
    return {
        "id": r["id"], "build_id": build_id, "story": r["story"], "summary": r["summary"], "words": r["words"],
        "features": r["features"], "prompt": r["prompt"], "prompt_template_id": r["prompt_template_id"],
        "summary_template_id": r["summary_template_id"], "generator_model": r["generator_model"],
        "sampling": r["sampling"], "parent_id": None, "verification": None, "dedup_cluster": r["dedup_cluster"],
        "num_words": len(words(r["story"])), "num_tokens": r["num_tokens"], "finish_reason": r["finish_reason"],
    }


def _format_example(r: dict[str, Any]) -> str:
    meta = f"`{r['id']}` · words: {', '.join(r['words'])} · features: {', '.join(r['features']) or 'none'}"
    body = "\n".join(f"> {line}" if line else ">" for line in r["story"].splitlines())
    summary = f"\n\nSummary: {r['summary']}" if r.get("summary") else ""
    return f"{meta}\n\n{body}{summary}"


def publish_stage(recipe: TinyStoriesRecipe, stages: list[StageResult]) -> tuple[Published, bool]:
    """Publish the last stage's records. Returns (published dataset, whether it was reused)."""
    build = build_dir(recipe)
    schema = load_schema(SCHEMA_ID)
    out = build.root / "dataset"
    fp = digest({"stage": "publish", "v": VERSIONS["publish"], "in": stages[-1].fingerprint,
                 "publish": recipe.publish.model_dump(mode="json"), "seed": recipe.seed,
                 "build_id": recipe.build_id, "schema": schema.document})
    if (out / MANIFEST).is_file():
        manifest = load_manifest(out)
        if manifest.get("fingerprint") == fp:
            return Published(out, manifest), True

    records = [published_record(r, recipe.build_id) for r in build.read(stages[-1].name).to_dicts()]
    rejected = concat([build.read(s.name, "rejected") for s in stages])
    generate = next(s for s in stages if s.name == "generate")
    info = {
        "build_id": recipe.build_id,
        "fingerprint": fp,
        "kind": recipe.kind,
        "recipe": recipe.model_dump(mode="json", exclude={"output_root"}) | {"generate": recipe.fingerprint_payload()["generate"]},
        "recipe_hash": recipe.content_hash(),
        "seed": recipe.seed,
        "models": sorted({r["generator_model"] for r in records}),
        "prompt_templates": TEMPLATES,
        "usage": generate.stats.get("usage", {}),
        "stages": [s.to_json() for s in stages],
    }
    examples = [_format_example(r) for r in pick_examples(records, 5, recipe.seed)]
    lengths = [r["num_words"] for r in records]
    published = publish_dataset(
        records, rejected, out_dir=out, schema=schema, cfg=recipe.publish, seed=recipe.seed, info=info,
        card=lambda m: render_card(m, title=recipe.name, description=recipe.description or
                                   "TinyStories-style short stories for small language models.", fields=FIELD_DOCS),
        report=lambda m: render_report(m, rejected=rejected, lengths=lengths, examples=examples),
    )
    return published, False
