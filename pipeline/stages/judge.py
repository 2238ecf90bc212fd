"""The judge stage: an LLM's verdict on every record, on its kind's rubric (``pipeline.judge``,
``pipeline.tinystories.rubric``...): a column per criterion, the model and the error; below a ``[judge] min``
threshold a record is rejected as ``judge:<criterion>``."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipeline.judge import Rubric
from pipeline.recipe import BaseRecipe
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Stage, Verdicts, table_stage

VERSION = 1
READS = ("seed", "judge", "backend")  # the judge's default model is the recipe's backend


JUDGE_COLUMNS = ("judge_model", "judge_error")  # beside a column per criterion of the kind's rubric


def judge_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    """An LLM judge's verdict on every record (``pipeline.judge``, the rubric in the kind's ``rubric.py``):
    a column per criterion; below a ``judge.min`` threshold a record is rejected as ``judge:<criterion>``
    (``judge:no_verdict`` when its verdict could not be read), with its scores in the detail."""
    cfg, rubric = recipe.judge, kind.rubric
    columns = judge_columns(rubric)

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

    return table_stage(recipe, "judge", upstream, version=VERSION, reads=READS, decide=decide,
                       text_field=kind.text_field, columns=None if cfg.enabled and rubric is not None else ("id",),
                       extra={"rubric": rubric.template_id() if rubric else None})


def judge_columns(rubric: Rubric | None) -> tuple[str, ...]:
    """The columns the judge stage gives a kind's records: one per criterion of its rubric, the model, the
    error."""
    return (*(rubric.columns() if rubric else ()), *JUDGE_COLUMNS)


def judge_fields(r: dict[str, Any], rubric: Rubric | None) -> dict[str, Any]:
    """A stage record's judge columns, for the kind's published record (null where the judge was off)."""
    return {c: r.get(c) for c in judge_columns(rubric)}


def judge() -> Stage[BaseRecipe]:
    """The LLM judge stage over a kind's records, on its rubric."""
    return Stage("judge", judge_stage, READS, split="map")
