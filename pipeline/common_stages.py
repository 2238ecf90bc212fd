"""Stages every corpus kind shares: gathering batches, dedup, scores, publishing.

A kind (``pipeline.tinystories``, ``pipeline.tinygsm``, ``pipeline.evol``)
supplies what differs (its text field, how a stage record becomes a published
one, how to show an example) and these functions do the rest over the build
directory. Their versions live here, once: a change to dedup is one edit.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.batches import USAGE_KEYS, rejection_counts
from pipeline.dedup import duplicate_verdicts
from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.fingerprint import declared_fingerprint
from pipeline.publish import MANIFEST, Published, publish_dataset
from pipeline.published_index import PublishedIndex
from pipeline.kinds import PUBLISH_READS, Growth, Stage, get_kind
from pipeline.recipe import BaseRecipe
from pipeline.records import REJECTED_SCHEMA, ColumnView, RecordView, rejected_frame, rejection
from pipeline.report import md_table, histogram, pick_examples, render_card, render_report
from pipeline.schema import RecordSchema, load_schema
from pipeline.shards import intact_manifest
from pipeline.stages import BuildDir, StageResult
from pipeline.tokenize import Tokenizer

MODEL_FIELDS = ("generator_model", "evolver_model", "responder_model")  # whichever a kind's records carry
# Bump a shared stage's version when its logic changes, so no kind reuses old outputs.
DEDUP_VERSION, SCORE_VERSION, PUBLISH_VERSION, FLUENCY_VERSION, TARGET_VERSION, JUDGE_VERSION = 2, 1, 2, 1, 1, 1
DECONTAMINATE_VERSION, PROSPECT_VERSION = 2, 1
PROSPECT_READS = ("seed", "prospect")
# ...and what of the recipe each reads (pipeline.fingerprint.declared_fingerprint); the judge's default model
# is the recipe's backend
DEDUP_READS, SCORE_READS, FLUENCY_READS = ("dedup",), ("seed", "difficulty"), ("fluency",)
JUDGE_READS = ("seed", "judge", "backend")
DECONTAMINATE_READS = ("decontaminate", "dedup")  # the near-duplicate check hashes like dedup
JUDGE_COLUMNS = ("judge_model", "judge_error")  # beside a column per criterion of the kind's rubric


def difficulty_section(records: Sequence[dict[str, Any]], summary: dict[str, Any] | None,
                       format_example: Callable[[dict[str, Any]], str]) -> str | None:
    """Markdown: proxy model, learning-percentage histogram, S2L clusters, easiest and hardest records."""
    if not summary or not summary.get("enabled") or not records:
        return None
    proxy = summary["proxy"]
    scored = [r for r in records if r.get("difficulty") is not None]
    if not scored:
        return None
    ordered = sorted(scored, key=lambda r: (r["difficulty"], r["id"]))
    sample = summary.get("sample")
    which = (f"Scored {summary['scored']:,} of {summary['records']:,} records: a random sample "
             f"(`[difficulty] sample = {sample}`); the others have null difficulty columns."
             if sample is not None and summary.get("scored", 0) < summary.get("records", 0)
             else f"Scored every record ({len(records):,}).")
    lines = [
        which,
        "",
        f"Proxy model: {proxy['parameters']:,} parameters, BPE vocabulary {proxy['vocab']}, "
        f"{proxy['epochs']} epochs on {proxy['records']} records, {proxy['checkpoints']} loss checkpoints, "
        f"{proxy['seconds']} s on {proxy['device']} ({proxy['train_tokens_per_s']} tokens/s training).",
        "",
        "Learning percentage (share of the loss drop in epoch 1; low = hard), in percent:",
        "",
        "```",
        histogram([round(100 * r["learning_percentage"]) for r in scored]),
        "```",
        "",
        f"S2L: {len(summary['clusters'])} trajectory clusters; the balanced subset (`s2l` config) keeps "
        f"{summary['s2l_selected']} of {len(scored)} scored records.",
        "",
        md_table(summary["clusters"]),
        "",
    ]
    if summary.get("ifd"):
        i = summary["ifd"]
        lines += [f"IFD with `{i['model']}`: mean {i['mean']:.3f}; {i['above_1']} records above 1 "
                  "(the instruction does not help the model predict the response).", ""]
    for title, picks in (("Easiest", ordered[:2]), ("Hardest", ordered[-2:][::-1])):
        for r in picks:
            lines += [f"**{title}** (difficulty {r['difficulty']:.2f}, LP {r['learning_percentage']:.3f})", "",
                      format_example(r), ""]
    return "\n".join(lines)


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
                    format_example: Callable[[dict[str, Any]], str]) -> tuple[list[str], list[tuple[str, str]]]:
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
    rubric = get_kind(recipe.kind).rubric
    if (judged := by_name.get("judge")) is not None and rubric is not None:
        if (text := judge_section(records, rubric, judged.stats, format_example)) is not None:
            sections.append(("Judge", text))
    return notes, sections


def stage_frame(rows: list[dict[str, Any]], build: BuildDir, upstream: StageResult) -> pl.DataFrame:
    if rows:
        return pl.DataFrame(rows, infer_schema_length=None)
    return build.read(upstream.name).clear()  # keep the columns even when nothing survives


Run = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]]


def record_stage(recipe: BaseRecipe, name: str, upstream: StageResult, *, version: int, reads: Sequence[str],
                 run: Run, omit: Sequence[str] = (), extra: dict[str, Any] | None = None,
                 tables: Callable[[], dict[str, pl.DataFrame]] | None = None) -> StageResult:
    """A stage that keeps or rejects the upstream stage's records, skipped when its fingerprint matches.

    The fingerprint is the upstream's, the recipe parts the stage ``reads`` (less ``omit``), and ``extra``:
    what else decides the result (digests of files). ``run(records)`` returns (kept, rejected, extra stats);
    ``tables()``, called after it, gives any other tables the run made (the verify stage's samples).
    """
    build = BuildDir(recipe.build_dir)
    fp = declared_fingerprint(recipe, name, version, reads, omit=omit, **{"in": upstream.fingerprint, **(extra or {})})
    if (done := build.done(name, fp)) is not None:
        return done
    t0 = time.perf_counter()
    records = build.read(upstream.name).to_dicts()
    kept, rejected, extra = run(records)
    rej = rejected_frame(rejected)
    side = tables() if tables is not None else {}
    return build.commit(name, fp, {"records": stage_frame(kept, build, upstream), "rejected": rej, **side},
                        {"in": len(records), **extra, "rejected_by_reason": rejection_counts(rej)}, time.perf_counter() - t0)


ROWS_PER_CHUNK = 10_000  # rows turned into Python dicts at a time: what a stage's Python code holds
ROWS_PER_SLICE = 100_000  # rows of a stage's output written at a time (Arrow, not dicts)


def iter_rows(frame: pl.DataFrame, columns: Sequence[str] | None = None,
              chunk: int = ROWS_PER_CHUNK) -> Iterator[dict[str, Any]]:
    """The rows of ``frame`` (only ``columns``) as dicts, ``chunk`` at a time: a stage reading a million
    records never holds a million dicts."""
    view = frame.select(columns) if columns is not None else frame
    for start in range(0, view.height, chunk):
        yield from view.slice(start, chunk).iter_rows(named=True)


@dataclass
class Verdicts:
    """What a columnar stage decided about its input, row by row: columns to add (or replace), one value
    per input row, the rows it rejects with (reason, detail), and its stats."""

    columns: dict[str, Sequence[Any]] = field(default_factory=dict)
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def table_stage(recipe: BaseRecipe, name: str, upstream: StageResult, *, version: int, reads: Sequence[str],
                decide: Callable[[pl.DataFrame], Verdicts], columns: Sequence[str] | None = None,
                omit: Sequence[str] = (), extra: dict[str, Any] | None = None) -> StageResult:
    """A stage that keeps or rejects the upstream's records, as :func:`record_stage` does, but over Arrow:
    ``decide(frame)`` sees the upstream table (only ``columns``, those of them it has, when given) and reads
    what it needs (:func:`iter_rows`); then the upstream file is read again a slice at a time, and each
    slice's kept rows (with the verdicts' columns) and rejected rows (as dicts, for their ``record_json``)
    are written as they come. About a tenth of the CPU of a dict per record, and memory that holds the
    columns ``decide`` reads, not the corpus twice."""
    build, text_field = BuildDir(recipe.build_dir), get_kind(recipe.kind).text_field
    fp = declared_fingerprint(recipe, name, version, reads, omit=omit, **{"in": upstream.fingerprint, **(extra or {})})
    if (done := build.done(name, fp)) is not None:
        return done
    t0 = time.perf_counter()
    path = upstream.path / "records.parquet"
    present = pq.read_schema(path).names
    frame = pl.read_parquet(path, columns=[c for c in columns if c in present] if columns is not None else None)
    n = frame.height
    verdicts = decide(frame)
    del frame
    added = [pl.Series(k, list(v), strict=False) for k, v in verdicts.columns.items()]  # one dtype per column
    keep = np.ones(n, dtype=bool)
    keep[list(verdicts.rejected)] = False

    def slices() -> Iterator[tuple[int, pl.DataFrame]]:
        offset, empty = 0, True
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROWS_PER_SLICE):
            part = pl.from_arrow(batch)
            assert isinstance(part, pl.DataFrame)
            yield offset, part.with_columns(c.slice(offset, part.height) for c in added)
            offset, empty = offset + part.height, False
        if empty:  # an empty table is one empty slice, so the output keeps the columns
            yield 0, pl.read_parquet(path).clear().with_columns(c.clear() for c in added)

    def kept() -> Iterator[pl.DataFrame]:
        for offset, part in slices():
            yield part.filter(pl.Series(keep[offset : offset + part.height]))

    def rejected() -> Iterator[pl.DataFrame]:
        for offset, part in slices():
            rows = np.flatnonzero(~keep[offset : offset + part.height]).tolist()
            yield rejected_frame([rejection(r, name, *verdicts.rejected[offset + i], text_field)
                                  for i, r in zip(rows, part[rows].iter_rows(named=True), strict=True)])

    by_reason = Counter(reason for reason, _ in verdicts.rejected.values())
    return build.commit(name, fp, {"records": kept(), "rejected": rejected()},
                        {"in": n, **verdicts.stats, "rejected_by_reason": dict(sorted(by_reason.items()))},
                        time.perf_counter() - t0)


def dedup_stage(recipe: BaseRecipe, upstream: StageResult, *, score_field: str | None = None) -> StageResult:
    """Within-build duplicates of the kind's text field, then records other builds already published
    (cross-build index); ``score_field`` decides which record of a cluster stays."""
    cfg, text_field = recipe.dedup, get_kind(recipe.kind).text_field
    index = PublishedIndex(recipe.output_root, recipe.kind, cfg.num_perm, cfg.ngram)

    def decide(frame: pl.DataFrame) -> Verdicts:
        ids = frame["id"].to_list()
        if not cfg.enabled:
            return Verdicts({"dedup_cluster": ids}, {}, {"already_published": {}})
        texts = ColumnView(frame[text_field])  # Python strings a slice at a time, for the signatures
        scores = ([x or 0.0 for x in frame[score_field].to_list()]
                  if cfg.keep == "score" and score_field and score_field in frame.columns else None)
        cluster, rejected = duplicate_verdicts(texts, ids, threshold=cfg.threshold, num_perm=cfg.num_perm,
                                               ngram=cfg.ngram, keep=cfg.keep, scores=scores)
        by_build: dict[str, int] = {}
        if cfg.cross_build:
            kept = [i for i in range(len(ids)) if i not in rejected]
            for m in index.find(ColumnView(frame[text_field].gather(kept)), cfg.threshold, recipe.name):
                by_build[m.build_id] = by_build.get(m.build_id, 0) + 1
                rejected[kept[m.index]] = ("already_published",
                                           f"{m.id} in build {m.build_id} (Jaccard ~{m.similarity:.2f})")
        return Verdicts({"dedup_cluster": cluster}, rejected, {"already_published": by_build})

    return table_stage(recipe, "dedup", upstream, version=DEDUP_VERSION, reads=DEDUP_READS, decide=decide,
                       columns=("id", text_field, *((score_field,) if score_field else ())), extra={
        "field": text_field, "published": index.fingerprint(recipe.name) if cfg.cross_build else None})


def dedup(score_field: str | None = None) -> Stage[BaseRecipe]:
    """The dedup stage over a kind's text field; ``score_field``: the record of a cluster with the highest
    value stays (else the first)."""
    return Stage("dedup", partial(dedup_stage, score_field=score_field), DEDUP_READS)


def decontaminate_stage(recipe: BaseRecipe, upstream: StageResult) -> StageResult:
    """Records sharing a ``decontaminate.ngram``-gram with a text of the recipe's evaluation files, or
    near-duplicating one, rejected as ``contaminated`` (``pipeline.decontam``); nothing named, nothing
    dropped, and the card says so."""
    cfg, text_field = recipe.decontaminate, get_kind(recipe.kind).text_field

    def decide(frame: pl.DataFrame) -> Verdicts:
        from pipeline.decontam import contaminated, load_eval_sets

        evals = load_eval_sets([(e.path, e.field) for e in cfg.eval_sets], cfg.ngram)
        near = cfg.near_duplicate_threshold if cfg.near_duplicates else None
        found = contaminated(ColumnView(frame[text_field]), evals, near_threshold=near,
                             num_perm=recipe.dedup.num_perm, ngram=recipe.dedup.ngram)
        return Verdicts({}, {i: ("contaminated", detail) for i, detail in found.items()},
                        {"eval_texts": len(evals.texts), "eval_ngrams": len(evals.ngrams),
                         "eval_sets": [{"file": e.path.name, "field": e.field} for e in cfg.eval_sets],
                         "ngram": cfg.ngram, "near_duplicate_threshold": near})

    return table_stage(recipe, "decontaminate", upstream, version=DECONTAMINATE_VERSION,
                       reads=DECONTAMINATE_READS, decide=decide, columns=(text_field,))


def decontaminate() -> Stage[BaseRecipe]:
    """Decontamination of a kind's text field against the recipe's evaluation files."""
    return Stage("decontaminate", decontaminate_stage, DECONTAMINATE_READS)


def decontamination_sentence(stats: dict[str, Any], removed: int) -> str:
    """What the card says was checked: the files, the n-gram and near-duplicate checks, what they removed."""
    if not stats.get("eval_sets"):
        return "Not decontaminated: the recipe names no evaluation set (`[decontaminate] eval_sets`)."
    files = ", ".join(f"{e['file']} ({e['field']})" for e in stats["eval_sets"])
    near = (f" and MinHash near-duplicates (Jaccard >= {stats['near_duplicate_threshold']})"
            if stats.get("near_duplicate_threshold") is not None else "")
    return (f"Decontaminated against {files}: {stats['eval_texts']} texts, checked for shared "
            f"{stats['ngram']}-grams (punctuation and numbers removed){near}; {removed} "
            f"record{'' if removed == 1 else 's'} removed.")


def fluency_stage(recipe: BaseRecipe, upstream: StageResult) -> StageResult:
    """The fluency score of every record's text (``pipeline.fluency``); above ``fluency.max_loss`` a record
    is rejected as ``disfluent``, with its loss in the detail."""
    cfg, text_field = recipe.fluency, get_kind(recipe.kind).text_field

    def decide(frame: pl.DataFrame) -> Verdicts:
        if not cfg.enabled or not frame.height:
            return Verdicts({"fluency_loss": [None] * frame.height}, {}, {"enabled": cfg.enabled})
        from pipeline.difficulty.ifd import LlamaScorer
        from pipeline.fluency import fluency_losses, too_disfluent

        losses = fluency_losses(frame[text_field].to_list(), LlamaScorer(cfg.model))
        rejected = {i: ("disfluent", f"mean token loss {loss} > {cfg.max_loss}")
                    for i, loss in enumerate(losses) if too_disfluent(loss, cfg.max_loss)}
        finite = sorted(x for x in losses if x is not None)
        return Verdicts({"fluency_loss": losses}, rejected,
                        {"enabled": True, "model": cfg.model, "median_loss": finite[len(finite) // 2] if finite else None})

    return table_stage(recipe, "fluency", upstream, version=FLUENCY_VERSION, reads=FLUENCY_READS, decide=decide,
                       columns=(text_field,) if cfg.enabled else ("id",), extra={"field": text_field})


def target_stage(recipe: BaseRecipe, upstream: StageResult, target: int, rounds: int,
                 max_candidates: int, grow: Growth, ran_out: bool = False) -> StageResult:
    """The first ``target`` survivors, in candidate order; the rest rejected as ``beyond_target``."""
    from pipeline.target import select, sentence

    text_field = get_kind(recipe.kind).text_field
    candidates = grow.get(recipe, grow.count)  # the last round's

    def run(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        kept, rest = select(records, target)
        rejected = [rejection(r, "target", "beyond_target", f"the first {target} survivors are published",
                              text_field) for r in rest]
        return kept, rejected, {"target": target, "candidates": candidates, "rounds": rounds,
                                "max_candidates": max_candidates, "met": len(kept) >= target,
                                "sentence": sentence(len(kept), target, candidates, rounds, max_candidates,
                                                     grow.budget, ran_out)}

    return record_stage(recipe, "target", upstream, version=TARGET_VERSION, reads=(grow.target,), run=run,
                        extra={"rounds": rounds, "max_candidates": max_candidates, "ran_out": ran_out})


def fluency() -> Stage[BaseRecipe]:
    """The fluency stage over a kind's text field."""
    return Stage("fluency", fluency_stage, FLUENCY_READS)


def judge_stage(recipe: BaseRecipe, upstream: StageResult) -> StageResult:
    """An LLM judge's verdict on every record (``pipeline.judge``, the kind's rubric in ``pipeline.rubrics``):
    a column per criterion; below a ``judge.min`` threshold a record is rejected as ``judge:<criterion>``
    (``judge:no_verdict`` when its verdict could not be read), with its scores in the detail."""
    cfg, rubric = recipe.judge, get_kind(recipe.kind).rubric
    columns = judge_columns(recipe.kind)

    def decide(frame: pl.DataFrame) -> Verdicts:
        if not cfg.enabled or not frame.height or rubric is None:
            return Verdicts({c: [None] * frame.height for c in columns}, {}, {"enabled": cfg.enabled})
        from pipeline.batches import Models
        from pipeline.judge import failed_threshold, judge_records, scores_text
        from pipeline.llm import sampling_params
        from pipeline.llm.types import derive_seed

        records = frame.to_dicts()  # model-bound: a judge reads thousands of records an hour, not a million
        with Models(recipe.output_root) as models:
            judge = models.open(cfg.backend or recipe.backend)
            verdicts = judge_records(records, rubric, judge, sampling_params(cfg.sampling),
                                     seeds=[derive_seed(recipe.seed, "judge", r["id"]) for r in records],
                                     retries=cfg.retries, max_chars=cfg.max_chars)
            usage = models.usage()
        added: dict[str, list[Any]] = {c: [] for c in columns}
        rejected: dict[int, tuple[str, str]] = {}
        for i, v in enumerate(verdicts):
            row = {"judge_model": judge.model_id, "judge_error": v.error,
                   **{c: (v.scores or {}).get(n) for n, c in zip(rubric.names, rubric.columns(), strict=True)}}
            for c in columns:
                added[c].append(row[c])
            failed = failed_threshold(v.scores, cfg.min, rubric)
            if failed is not None:
                rejected[i] = (f"judge:{failed}", str(v.error) if v.scores is None else
                               f"{failed} {v.scores[failed]} < {cfg.min[failed]}; {scores_text(v.scores)}")
        return Verdicts(added, rejected, {
            "enabled": True, "model": judge.model_id, "rubric": rubric.template_id(), "judged": len(verdicts),
            "unread": sum(v.scores is None for v in verdicts), "retried": sum(v.attempts > 1 for v in verdicts),
            "min": dict(cfg.min), "usage": usage})

    return table_stage(recipe, "judge", upstream, version=JUDGE_VERSION, reads=JUDGE_READS, decide=decide,
                       columns=None if cfg.enabled and rubric is not None else ("id",), extra={"rubric": rubric.template_id() if rubric else None})


def judge_columns(kind: str) -> tuple[str, ...]:
    """The columns the judge stage gives a kind's records: one per criterion of its rubric, the model, the
    error."""
    rubric = get_kind(kind).rubric
    return (*(rubric.columns() if rubric else ()), *JUDGE_COLUMNS)


def judge_fields(r: dict[str, Any], kind: str) -> dict[str, Any]:
    """A stage record's judge columns, for the kind's published record (null where the judge was off)."""
    return {c: r.get(c) for c in judge_columns(kind)}


def judge() -> Stage[BaseRecipe]:
    """The LLM judge stage over a kind's records, on its rubric."""
    return Stage("judge", judge_stage, JUDGE_READS)


def score_stage(recipe: BaseRecipe, upstream: StageResult, *, fields: tuple[str, str]) -> StageResult:
    """Proxy-model difficulty scores for every record, of its ``fields`` (instruction, response) pair (null
    columns when the recipe turns them off, or for the records a ``[difficulty] sample`` leaves out)."""
    cfg = recipe.difficulty

    def decide(frame: pl.DataFrame) -> Verdicts:
        if not cfg.enabled or not frame.height:
            return Verdicts({k: [None] * frame.height for k in DIFFICULTY_COLUMNS}, {},
                            {"difficulty": {"enabled": cfg.enabled}})
        from pipeline.difficulty.score import score_pairs

        result = score_pairs(Pairs(frame[fields[0]], frame[fields[1]]), cfg, recipe.seed)
        return Verdicts(result.columns, {}, {"difficulty": {"enabled": True, **result.summary}})

    return table_stage(recipe, "score", upstream, version=SCORE_VERSION, reads=SCORE_READS, decide=decide,
                       columns=fields if cfg.enabled else ("id",))


def prospect_stage(recipe: BaseRecipe, upstream: StageResult, *, fields: tuple[str, str]) -> StageResult:
    """One-shot prospecting scores (``pipeline.difficulty.prospect``) of every record's ``fields``
    (instruction, response) pair, or of ``[prospect] sample`` of them; null columns when it is off."""
    from pipeline.difficulty.prospect import COLUMNS

    cfg = recipe.prospect  # type: ignore[attr-defined]  # the kinds whose records are instructions have it

    def decide(frame: pl.DataFrame) -> Verdicts:
        if not cfg.enabled or not frame.height:
            return Verdicts({c: [None] * frame.height for c in COLUMNS}, {}, {"prospect": {"enabled": cfg.enabled}})
        from pipeline.difficulty.ifd import LlamaScorer
        from pipeline.difficulty.prospect import load_tasks, prospect_scores
        from pipeline.difficulty.score import sample_rows

        tasks, pairs = load_tasks(cfg.tasks), Pairs(frame[fields[0]], frame[fields[1]])
        rows = sample_rows(frame.height, cfg.sample, recipe.seed)
        chosen = list(range(frame.height)) if rows is None else rows.tolist()
        t0 = time.perf_counter()
        scores = prospect_scores([pairs[i] for i in chosen], tasks, LlamaScorer(cfg.model))
        seconds = time.perf_counter() - t0
        columns: dict[str, list[float | None]] = {c: [None] * frame.height for c in COLUMNS}
        for k, i in enumerate(chosen):
            columns["prospect_score"][i] = round(float(scores.score[k]), 4)
            columns["prospect_gain"][i] = round(float(scores.gain[k]), 4)
        return Verdicts(columns, {}, {"prospect": {
            "enabled": True, "model": cfg.model, "tasks": len(tasks), "task_file": cfg.tasks.name,
            "records": frame.height, "scored": len(chosen), "sample": cfg.sample, "seconds": round(seconds, 2),
            "seconds_per_record": round(seconds / len(chosen), 3) if chosen else None,
            "zero_shot_loss": round(float(scores.zero_shot.mean()), 4)}})

    return table_stage(recipe, "prospect", upstream, version=PROSPECT_VERSION, reads=PROSPECT_READS,
                       decide=decide, columns=fields if cfg.enabled else ("id",))


def prospect(instruction: str, response: str) -> Stage[BaseRecipe]:
    """The one-shot prospecting stage of a kind whose records are (``instruction``, ``response``) pairs."""
    return Stage("prospect", partial(prospect_stage, fields=(instruction, response)), PROSPECT_READS)


class Pairs(Sequence[tuple[str, str]]):
    """(instruction, response) pairs over two columns, made when asked for: a sampled score of a million
    records reads the strings of its sample only."""

    def __init__(self, instructions: pl.Series, responses: pl.Series):
        self._a, self._b = instructions, responses

    def __len__(self) -> int:
        return len(self._a)

    def __getitem__(self, i: int) -> tuple[str, str]:  # type: ignore[override]  # no slices are asked for
        return self._a[i], self._b[i]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return zip(ColumnView(self._a), ColumnView(self._b), strict=True)


def score(instruction: str, response: str) -> Stage[BaseRecipe]:
    """The difficulty stage of a kind whose records are (``instruction``, ``response``) field pairs."""
    return Stage("score", partial(score_stage, fields=(instruction, response)), SCORE_READS)


def field_docs(schema: dict[str, Any]) -> dict[str, str]:
    """What the dataset card says of each field: its description in the schema (one place for both)."""
    return {k: v["description"] for k, v in schema["properties"].items() if v.get("description")}


def publish_stage(
    recipe: BaseRecipe,
    stages: list[StageResult],
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
    build, kind = BuildDir(recipe.build_dir), get_kind(recipe.kind)
    schema, text_field = load_schema(kind.schema_id), kind.text_field
    out = build.root / "dataset"
    fp = declared_fingerprint(recipe, "publish", PUBLISH_VERSION, PUBLISH_READS, **{
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
        return _publish(recipe, stages, scratch, fp, tok, schema=schema, text_field=text_field, out=out,
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
             schema: RecordSchema, text_field: str, out: Path, to_record: Callable[[dict[str, Any]], dict[str, Any]],
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
    shared_notes, shared = shared_sections(recipe, stages, records, format_example)
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
    rubric = get_kind(recipe.kind).rubric
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
            recipe.name, recipe.build_id, records.column("id"), records.column_view(text_field))
    return published, False
