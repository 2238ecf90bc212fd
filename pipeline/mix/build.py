"""The mix kind's stages and ``KIND``: published datasets in, one dataset with lineage out.

* ``sources`` reads every source (each shard checked against its manifest: a corrupted source stops the
  build before anything is written) and lays each one's rows out in a seeded order (``source_rank``);
* ``dedup`` (the shared stage, over ``text``) removes records that two sources both hold, keeping the
  earlier source's;
* ``sample`` takes each source's share in its order: ``ratio`` of ``[mix] records`` (each count within
  one record of its share) or up to ``tokens``; a source that cannot fill its share gives what it has and
  the card says how short it fell;
* ``publish`` writes ``schemas/mix.v1.json`` records; the manifest lists every source, its manifest's
  sha256 and what it gave.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.stages.dedup import dedup
from pipeline.stages.publish import publish_stage as common_publish
from pipeline.fingerprint import declared_fingerprint
from pipeline.kinds import Kind, MixFields, Produced, Runner, Stage
from pipeline.mix.allocate import allocate, within_budget
from pipeline.mix.sources import Source, open_source, seeded_order
from pipeline.publish import Published
from pipeline.mix.recipe import MixRecipe
from pipeline.records import make_id, rejected_frame
from pipeline.report import md_table
from pipeline.stages import BuildDir, StageResult
from pipeline.stages.base import KindContext
from pipeline.text import words

SCHEMA_ID = "mix.v1"
VERSIONS = {"sources": 1, "sample": 1}
READS = {"sources": ("seed", "sources"), "sample": ("sources", "mix")}


# --- sources --------------------------------------------------------------------------


def sources_stage(recipe: MixRecipe) -> StageResult:
    build = BuildDir(recipe.build_dir)
    opened = [open_source(s) for s in recipe.sources]  # all verified before anything is written
    fp = declared_fingerprint(recipe, "sources", VERSIONS["sources"], READS["sources"],
                              manifests=[s.manifest_sha256 for s in opened])
    if (done := build.done("sources", fp)) is not None:
        return done
    t0 = time.perf_counter()
    parts = [_laid_out(s, recipe.seed, i) for i, s in enumerate(opened)]
    frame = pl.concat(parts, how="vertical") if parts else pl.DataFrame()
    return build.commit("sources", fp, {"records": frame, "rejected": rejected_frame([])},
                        {"in": frame.height, "sources": [s.describe() for s in opened]}, time.perf_counter() - t0)


def _laid_out(source: Source, seed: int, index: int) -> pl.DataFrame:
    order = seeded_order(source.table.num_rows, seed, index)
    table = source.table.take(pa.array(order))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    ids = [make_id(f"{source.label}\n{sid}") for sid in frame["source_id"].to_list()]
    return frame.with_columns(
        pl.Series("id", ids), pl.lit(source.label).alias("source"), pl.lit(source.kind).alias("source_kind"),
        pl.lit(source.build_id).cast(pl.String).alias("source_build_id"),
        pl.Series("source_rank", np.arange(len(order), dtype=np.int64)))


def produce(recipe: MixRecipe, runner: Runner) -> Produced:
    return Produced([runner.stage("sources", sources_stage, recipe)], {"model_calls": 0, "cache_hits": 0,
                                                                       "completion_tokens": 0})


# --- sample ---------------------------------------------------------------------------


def sample_stage(recipe: MixRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    """Each source's share of the deduplicated candidates, in its seeded order."""
    build = BuildDir(recipe.build_dir)
    fp = declared_fingerprint(recipe, "sample", VERSIONS["sample"], READS["sample"], **{"in": upstream.fingerprint})
    if (done := build.done("sample", fp)) is not None:
        return done
    t0 = time.perf_counter()
    frame = build.read(upstream.name)
    sources = recipe.sources
    asked = (allocate(recipe.mix.records or 0, [s.ratio or 0.0 for s in sources])
             if sources[0].ratio is not None else [None] * len(sources))
    taken, given = [], []
    for spec, want in zip(sources, asked, strict=True):
        rows = frame.filter(pl.col("source") == spec.label).sort("source_rank") if frame.height else frame
        if want is not None:
            n = min(want, rows.height)
            info = {"source": spec.label, "ratio": spec.ratio, "asked": want, "available": rows.height,
                    "taken": n, "short_by": want - n}
        else:
            tokens = rows["num_tokens"].fill_null(0).to_numpy() if rows.height else np.zeros(0, dtype=np.int64)
            n = within_budget(tokens, spec.tokens or 0)
            got = int(tokens[:n].sum())
            info = {"source": spec.label, "tokens": spec.tokens, "available": rows.height, "taken": n,
                    "taken_tokens": got, "short_by_tokens": max(0, (spec.tokens or 0) - int(tokens.sum()))}
        taken.append(rows.head(n))
        given.append(info)
    out = pl.concat(taken, how="vertical") if taken else frame
    return build.commit("sample", fp, {"records": out, "rejected": rejected_frame([])},
                        {"in": frame.height, "sources": given}, time.perf_counter() - t0)


def shortfalls(given: list[dict[str, Any]]) -> list[str]:
    """A sentence for each source that could not fill its share."""
    notes = []
    for g in given:
        if g.get("short_by"):
            notes.append(f"Source {g['source']} was asked for {g['asked']} records (ratio {g['ratio']}) and had "
                         f"{g['available']} after deduplication: short by {g['short_by']}.")
        elif g.get("short_by_tokens"):
            notes.append(f"Source {g['source']} was asked for {g['tokens']} tokens and had "
                         f"{g['taken_tokens']} in {g['taken']} records: short by {g['short_by_tokens']} tokens.")
    return notes


# --- publish --------------------------------------------------------------------------


def published_record(r: dict[str, Any], build_id: str) -> dict[str, Any]:
    return {"id": r["id"], "build_id": build_id, "source": r["source"], "source_kind": r["source_kind"],
            "source_build_id": r["source_build_id"], "source_id": r["source_id"], "instruction": r["instruction"],
            "response": r["response"], "text": r["text"], "num_words": len(words(r["text"])),
            "num_tokens": r["num_tokens"], "difficulty": r["difficulty"],
            "learning_percentage": r["learning_percentage"], "code_difficulty": r["code_difficulty"],
            "dedup_cluster": r["dedup_cluster"]}


def _format_example(r: dict[str, Any]) -> str:
    body = "\n".join(f"> {line}" if line else ">" for line in r["text"].splitlines())
    return f"`{r['id']}` · {r['source']} ({r['source_kind']}) · `{r['source_id']}`\n\n{body}"


def publish_stage(recipe: MixRecipe, stages: list[StageResult], kind: KindContext) -> tuple[Published, bool]:
    by_name = {s.name: s for s in stages}
    opened, given = by_name["sources"].stats["sources"], by_name["sample"].stats["sources"]
    sources = [{**o, **{k: v for k, v in g.items() if k != "source"}} for o, g in zip(opened, given, strict=True)]

    def section(records: list[dict[str, Any]]) -> str:
        published: dict[str, int] = {}
        for r in records:
            published[r["source"]] = published.get(r["source"], 0) + 1
        total = sum(published.values()) or 1
        rows = [{"source": s["source"], "kind": s["kind"], "build": s["build_id"],
                 "manifest sha256": s["manifest_sha256"][:12],
                 "asked": s.get("asked", f"{s.get('tokens')} tokens"), "available": s["available"],
                 "published": published.get(s["source"], 0),
                 "share": f"{published.get(s['source'], 0) / total:.1%}"} for s in sources]
        return md_table(rows)

    return common_publish(
        recipe, stages, kind, to_record=partial(published_record, build_id=recipe.build_id), templates={},
        format_example=_format_example, length=lambda r: r["num_words"], training_text=lambda r: r["text"],
        default_description="A mixture of published tinyforge datasets, each record with its source and "
                            "source id.",
        extra_sections=[("Sources", section)], notes=shortfalls(given), extra_info={"sources": sources})


KIND = Kind(
    name="mix", recipe=MixRecipe, flow_name="mix", schema_id=SCHEMA_ID, text_field="text",
    produce=produce, stages=(dedup(), Stage("sample", sample_stage, READS["sample"], split="whole")), publish=publish_stage,
    description="a mixture of published datasets, by ratio or token budget, with lineage",
    produce_reads={"sources": READS["sources"]},
    mix_fields=MixFields("instruction", "response", text_column="text"),  # a mix of mixes keeps its texts
)
