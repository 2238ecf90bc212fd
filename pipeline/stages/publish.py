"""The publish step: the last stage's records projected onto the kind's shard schema, validated,
tokenized when asked, and written as a dataset with its manifest, card and report
(``pipeline.publish``), then added to the cross-build index. Its config is ``PublishConfig``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.batches import USAGE_KEYS
from pipeline.fingerprint import declared_fingerprint
from pipeline.judge import Rubric
from pipeline.publish import Published, publish_dataset
from pipeline.published_index import PublishedIndex
from pipeline.recipe import BaseRecipe
from pipeline.records import REJECTED_SCHEMA, RecordView
from pipeline.report import pick_examples, render_card, render_report
from pipeline.schema import RecordSchema, load_schema
from pipeline.shards import intact_manifest
from pipeline.stages import BuildDir, StageResult
from pipeline.stages.base import ROWS_PER_CHUNK, KindContext
from pipeline.stages.decontaminate import decontamination_sentence
from pipeline.stages.score import difficulty_section
from pipeline.tokenize import Tokenizer

VERSION = 2
READS = ("seed", "publish", "name", "description")  # the build id, in its fingerprint too, covers the rest


MODEL_FIELDS = ("generator_model", "evolver_model", "responder_model")  # whichever a kind's records carry


FIGURE_TITLES = {"length": "Length of the published records (words)",
                 # The difficulty column is a rank (uniform by construction); the raw signal is more telling.
                 "learning": "Learning percentage (share of the loss drop in epoch 1; low = hard)",
                 "ifd": "IFD (loss with the instruction / without; near or above 1 = hard)",
                 "code": "Code difficulty of the programs (mean of cyclomatic and Halstead difficulty)"}


def build_figures(records: list[dict[str, Any]], lengths: list[int], difficulty: dict[str, Any] | None,
                  judged: Sequence[str] = ()) -> tuple[dict[str, bytes], dict[str, str]]:
    """The report's figures, by name, and their titles; ``judged``: the judge's numeric criteria, one
    figure each, when the judge ran."""
    from pipeline.judge import column
    from pipeline.plots import histogram_png

    titles = {**FIGURE_TITLES, **{column(c): f"Judge: {c} (1-10)" for c in judged}}
    figures = {"length": histogram_png(lengths, title=FIGURE_TITLES["length"], xlabel="words")}
    if difficulty and difficulty.get("enabled"):
        figures["learning"] = histogram_png(
            [r["learning_percentage"] for r in records if r.get("learning_percentage") is not None],
            title=FIGURE_TITLES["learning"], xlabel="learning percentage")
        ifd = [r["ifd"] for r in records if r.get("ifd") is not None]
        if ifd:
            figures["ifd"] = histogram_png(ifd, title=FIGURE_TITLES["ifd"], xlabel="IFD")
    if code := [r["code_difficulty"] for r in records if r.get("code_difficulty") is not None]:
        figures["code"] = histogram_png(code, title=FIGURE_TITLES["code"], xlabel="overall metric")
    for c in judged:
        if scores := [r[column(c)] for r in records if r.get(column(c)) is not None]:
            figures[column(c)] = histogram_png(scores, title=titles[column(c)], xlabel="score")
    return figures, titles


def shared_sections(recipe: BaseRecipe, stages: list[StageResult], records: list[dict[str, Any]],
                    format_example: Callable[[dict[str, Any]], str],
                    rubric: Rubric | None) -> tuple[list[str], list[tuple[str, str]]]:
    """What the shared stages add to a dataset: sentences for the card and the build's last lines, and
    report sections (the target met or not, fluency, the judge)."""
    from pipeline.code_metrics import code_section
    from pipeline.difficulty.prospect import prospect_section
    from pipeline.fluency import fluency_section
    from pipeline.judge import judge_section

    by_name = {s.name: s for s in stages}
    notes, sections = [], []
    if (clean := by_name.get("decontaminate")) is not None:
        notes.append(decontamination_sentence(clean.stats, clean.rows.get("rejected", 0)))
    if (target := by_name.get("target")) is not None:
        notes.append(target.stats["sentence"])
        sections.append(("Target", target.stats["sentence"]))
    if (fluent := fluency_section(records, format_example, recipe.fluency.max_loss)) is not None:
        sections.append(("Fluency", fluent))
    if (code := code_section(records, format_example)) is not None:
        sections.append(("Code difficulty", code))
    if (prospected := by_name.get("prospect")) is not None:
        if (text := prospect_section(records, prospected.stats.get("prospect", {}), format_example)) is not None:
            sections.append(("Prospecting", text))
    if (judged := by_name.get("judge")) is not None and rubric is not None:
        if (text := judge_section(records, rubric, judged.stats, format_example)) is not None:
            sections.append(("Judge", text))
    return notes, sections


def field_docs(schema: dict[str, Any]) -> dict[str, str]:
    """What the dataset card says of each field: its description in the schema (one place for both)."""
    return {k: v["description"] for k, v in schema["properties"].items() if v.get("description")}


def publish_stage(
    recipe: BaseRecipe,
    stages: list[StageResult],
    kind: KindContext,
    *,
    to_record: Callable[[dict[str, Any]], dict[str, Any]],
    templates: dict[str, str],
    format_example: Callable[[dict[str, Any]], str],
    length: Callable[[dict[str, Any]], int],
    default_description: str,
    training_text: Callable[[dict[str, Any]], str],
    extra_sections: Sequence[tuple[str, Callable[[list[dict[str, Any]]], str]]] = (),
    configs: dict[str, tuple[str, list[dict[str, Any]]]] | None = None,
    notes: Sequence[str] = (),
    extra_info: dict[str, Any] | None = None,
) -> tuple[Published, bool]:
    """Publish the last stage's records under the kind's schema. Returns (dataset, whether an identical one
    was reused).

    ``training_text(record)`` is what ``input_ids`` tokenizes when the recipe asks for it.
    ``extra_sections``: (title, render(published records) -> markdown) for the kind's own report sections.
    ``configs``: other tables of the dataset, name -> (schema id, rows); ``notes``: sentences the card adds
    after the description; ``extra_info``: more of the manifest (a math build's calibration).
    """
    build = BuildDir(recipe.build_dir)
    schema = load_schema(kind.schema_id)
    out = build.root / "dataset"
    fp = declared_fingerprint(recipe, "publish", VERSION, READS, **{
        "in": [s.fingerprint for s in stages], "build_id": recipe.build_id, "schema": schema.document})
    indexed = not (recipe.dedup.enabled and recipe.dedup.cross_build) or PublishedIndex(
        recipe.output_root, recipe.kind, recipe.dedup.num_perm, recipe.dedup.ngram).has(recipe.name)
    if indexed and (manifest := intact_manifest(out)) is not None and manifest.get("fingerprint") == fp:
        return Published(out, manifest), True  # (a missing or damaged index entry is made by publishing again)

    # The published records are made a chunk at a time (projected, validated, tokenized) into a scratch
    # Parquet file beside the dataset; the report reads them through a view that makes dicts on demand,
    # and the shards gather their rows from the file: a corpus is never whole in memory, as dicts or Arrow.
    tok = None
    if recipe.publish.tokenizer:
        from pipeline.tokenize import load_tokenizer

        tok = load_tokenizer(recipe.publish.tokenizer)
    scratch = build.root / f".publish-{uuid.uuid4().hex[:8]}.parquet"
    try:
        return _publish(recipe, stages, scratch, fp, tok, schema=schema, kind=kind, out=out,
                        to_record=to_record, templates=templates, format_example=format_example, length=length,
                        default_description=default_description, training_text=training_text,
                        extra_sections=extra_sections, configs=configs, notes=notes, extra_info=extra_info)
    finally:
        scratch.unlink(missing_ok=True)


def write_published(source: Path, scratch: Path, schema: RecordSchema, to_record: Callable[[dict[str, Any]], dict[str, Any]],
                    tok: Tokenizer | None, training_text: Callable[[dict[str, Any]], str], append_eos: bool) -> None:
    """The last stage's records, a row group at a time, as published records (``to_record``, refused when
    they break ``schema``, ``input_ids`` from ``tok``) in the Parquet file ``scratch``."""
    writer = None
    try:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=ROWS_PER_CHUNK):
            chunk = [to_record(r) for r in batch.to_pylist()]
            table = schema.to_table(chunk)  # refuses records that break the contract
            if tok is not None:
                table = table.append_column("input_ids", tok.encode_arrow((training_text(r) for r in chunk),
                                                                          append_eos=append_eos))
            writer = writer or pq.ParquetWriter(scratch, table.schema, compression="lz4")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # nothing survived: an empty file, so the caller reports it in one place
        empty = schema.arrow.empty_table()
        if tok is not None:
            empty = empty.append_column("input_ids", pa.array([], type=pa.list_(pa.int32())))
        pq.write_table(empty, scratch)


def _publish(recipe: BaseRecipe, stages: list[StageResult], scratch: Path, fp: str, tok: Tokenizer | None, *,
             schema: RecordSchema, kind: KindContext, out: Path, to_record: Callable[[dict[str, Any]], dict[str, Any]],
             templates: dict[str, str], format_example: Callable[[dict[str, Any]], str],
             length: Callable[[dict[str, Any]], int], default_description: str,
             training_text: Callable[[dict[str, Any]], str],
             extra_sections: Sequence[tuple[str, Callable[[list[dict[str, Any]]], str]]],
             configs: dict[str, tuple[str, list[dict[str, Any]]]] | None, notes: Sequence[str],
             extra_info: dict[str, Any] | None) -> tuple[Published, bool]:
    build = BuildDir(recipe.build_dir)
    write_published(build.stage_path(stages[-1].name) / "records.parquet", scratch, schema, to_record, tok,
                    training_text, recipe.publish.append_eos)
    records = RecordView(scratch, columns=schema.fields)
    shared_notes, shared = shared_sections(recipe, stages, records, format_example, kind.rubric)
    notes = [*notes, *shared_notes]  # met or not, the card, the report and the build's last lines say the target
    # lazily, over the stages' files: a build may reject millions of records, each with its record_json
    rejected = pl.concat([pl.scan_parquet(s.path / "rejected.parquet").cast(REJECTED_SCHEMA) for s in stages])
    usage = {k: sum(s.stats.get("usage", {}).get(k, 0) for s in stages) for k in USAGE_KEYS}
    already = next((s.stats.get("already_published", {}) for s in stages if s.name == "dedup"), {})
    difficulty = next((s.stats.get("difficulty") for s in stages if s.name == "score"), None)
    payload = recipe.fingerprint_payload()
    info = {
        "build_id": recipe.build_id,
        "fingerprint": fp,
        "kind": recipe.kind,
        "recipe": payload,
        "recipe_hash": recipe.content_hash(),
        "seed": recipe.seed,
        "models": sorted({m for k in MODEL_FIELDS if k in schema.fields
                          for m in records.arrow_column(k).unique().to_pylist() if m}),
        "prompt_templates": templates,
        "usage": usage,
        "dropped_already_published": {"total": sum(already.values()), "by_build": already},
        "difficulty": difficulty,
        "stages": [s.to_json() for s in stages],
        "cost": recipe.cost.model_dump(mode="json"),
        "notes": list(notes),
        **(extra_info or {}),
    }
    examples = [format_example(r) for r in pick_examples(records, 5, recipe.seed)]
    lengths = [length(r) for r in records]
    sections = [*((title, render(records)) for title, render in extra_sections), *shared]
    judged = next((s.stats for s in stages if s.name == "judge"), {})
    rubric = kind.rubric
    figures, titles = build_figures(records, lengths, difficulty,
                                    rubric.numeric if judged.get("enabled") and rubric else ())
    tokenizer = tok.describe(recipe.publish.append_eos) if tok is not None else None
    published = publish_dataset(
        scratch, rejected, out_dir=out, schema=schema, cfg=recipe.publish, seed=recipe.seed, info=info,
        card=lambda m: render_card(m, title=recipe.name,
                                   description="\n\n".join([recipe.description.strip() or default_description, *notes]),
                                   fields=field_docs(schema.document)),
        report=lambda m: render_report(m, rejected=rejected, lengths=lengths, examples=examples,
                                       difficulty=difficulty_section(records, difficulty, format_example),
                                       sections=sections,
                                       figures=[(t, m["plots"][n]) for n, t in titles.items() if n in figures]),
        figures=figures, tokenizer=tokenizer,
        subsets={"s2l": "s2l_selected"} if difficulty and difficulty.get("enabled") else {},
        configs={name: (load_schema(sid), rows) for name, (sid, rows) in (configs or {}).items()},
    )
    if recipe.dedup.enabled and recipe.dedup.cross_build:
        PublishedIndex(recipe.output_root, recipe.kind, recipe.dedup.num_perm, recipe.dedup.ngram).register(
            recipe.name, recipe.build_id, records.column("id"), records.column_view(kind.text_field))
    return published, False
