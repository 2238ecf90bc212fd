"""Stages every corpus kind shares: gathering batches, dedup, publishing.

A kind (``pipeline.tinystories``, ``pipeline.tinygsm``) supplies what differs
(its text field, how a stage record becomes a published one, how to show an
example) and these functions do the rest over the build directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import polars as pl

from pipeline.dedup import dedup_records
from pipeline.fingerprint import digest
from pipeline.publish import MANIFEST, Published, publish_dataset
from pipeline.recipe import DedupConfig
from pipeline.records import rejected_frame
from pipeline.report import pick_examples, render_card, render_report
from pipeline.schema import load_schema
from pipeline.shards import load_manifest
from pipeline.stages import BuildDir, StageResult, concat

USAGE_KEYS = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens")


def reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    return dict(rejected.group_by("reason").len().sort("reason").iter_rows())


def stage_frame(rows: list[dict[str, Any]], build: BuildDir, upstream: StageResult) -> pl.DataFrame:
    if rows:
        return pl.DataFrame(rows, infer_schema_length=None)
    return build.read(upstream.name).clear()  # keep the columns even when nothing survives


def skipped_batch(batch: int, size: int) -> dict[str, Any]:
    return {"batch": batch, "items": size, "skipped": True, "seconds": 0.0, **dict.fromkeys(USAGE_KEYS, 0)}


def gather_batches(build: BuildDir, name: str, fingerprint: str, batches: int, count: int) -> StageResult:
    """Turn a stage's finished batches into its output; every batch must be done."""
    if (done := build.done(name, fingerprint)) is not None:
        return done
    parts = build.parts(name, fingerprint)
    missing = [b for b in range(batches) if not parts.has(b)]
    if missing:
        raise RuntimeError(f"{name}: batches {missing} are not finished")
    stats = [parts.stats(b) for b in range(batches)]
    usage = {k: sum(s.get(k, 0) for s in stats) for k in USAGE_KEYS}
    rejected = parts.read(range(batches), "rejected")
    result = build.commit(name, fingerprint,
                          {"records": parts.read(range(batches), "records"), "rejected": rejected},
                          {"in": count, "usage": usage, "rejected_by_reason": reasons(rejected)},
                          sum(s["seconds"] for s in stats))
    build.clear_parts(name)
    return result


def dedup_stage(build: BuildDir, upstream: StageResult, cfg: DedupConfig, *, text_field: str,
                version: int) -> StageResult:
    fp = digest({"stage": "dedup", "v": version, "in": upstream.fingerprint, "dedup": cfg.model_dump(mode="json"),
                 "field": text_field})
    if (done := build.done("dedup", fp)) is not None:
        return done
    t0 = time.perf_counter()
    records = build.read(upstream.name).to_dicts()
    if cfg.enabled:
        kept, rejected = dedup_records(records, text_field=text_field, threshold=cfg.threshold,
                                       num_perm=cfg.num_perm, ngram=cfg.ngram)
    else:
        kept, rejected = [{**r, "dedup_cluster": r["id"]} for r in records], []
    rej = rejected_frame(rejected)
    return build.commit("dedup", fp, {"records": stage_frame(kept, build, upstream), "rejected": rej},
                        {"in": len(records), "rejected_by_reason": reasons(rej)}, time.perf_counter() - t0)


def publish_stage(
    recipe: Any,
    stages: list[StageResult],
    *,
    schema_id: str,
    version: int,
    to_record: Callable[[dict[str, Any]], dict[str, Any]],
    templates: dict[str, str],
    field_docs: dict[str, str],
    format_example: Callable[[dict[str, Any]], str],
    length: Callable[[dict[str, Any]], int],
    default_description: str,
) -> tuple[Published, bool]:
    """Publish the last stage's records. Returns (dataset, whether an identical one was reused)."""
    build = BuildDir(recipe.build_dir)
    schema = load_schema(schema_id)
    out = build.root / "dataset"
    fp = digest({"stage": "publish", "v": version, "in": stages[-1].fingerprint,
                 "publish": recipe.publish.model_dump(mode="json"), "seed": recipe.seed,
                 "build_id": recipe.build_id, "schema": schema.document})
    if (out / MANIFEST).is_file():
        manifest = load_manifest(out)
        if manifest.get("fingerprint") == fp:
            return Published(out, manifest), True

    records = [to_record(r) for r in build.read(stages[-1].name).to_dicts()]
    rejected = concat([build.read(s.name, "rejected") for s in stages])
    usage = {k: sum(s.stats.get("usage", {}).get(k, 0) for s in stages) for k in USAGE_KEYS}
    payload = recipe.fingerprint_payload()
    info = {
        "build_id": recipe.build_id,
        "fingerprint": fp,
        "kind": recipe.kind,
        "recipe": payload,
        "recipe_hash": recipe.content_hash(),
        "seed": recipe.seed,
        "models": sorted({r["generator_model"] for r in records}),
        "prompt_templates": templates,
        "usage": usage,
        "stages": [s.to_json() for s in stages],
    }
    examples = [format_example(r) for r in pick_examples(records, 5, recipe.seed)]
    lengths = [length(r) for r in records]
    published = publish_dataset(
        records, rejected, out_dir=out, schema=schema, cfg=recipe.publish, seed=recipe.seed, info=info,
        card=lambda m: render_card(m, title=recipe.name, description=recipe.description or default_description,
                                   fields=field_docs),
        report=lambda m: render_report(m, rejected=rejected, lengths=lengths, examples=examples),
    )
    return published, False
