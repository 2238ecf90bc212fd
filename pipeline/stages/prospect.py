"""The prospect stage: one-shot prospecting scores of every record's (instruction, response) pair, or of
``[prospect] sample`` of them (``pipeline.difficulty.prospect``). Its config is ``ProspectConfig``."""

from __future__ import annotations

import time
from functools import partial

import polars as pl

from pipeline.recipe import BaseRecipe
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Pairs, Stage, Verdicts, table_stage

VERSION = 1
READS = ("seed", "prospect")


def prospect_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext, *,
                   fields: tuple[str, str]) -> StageResult:
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

    return table_stage(recipe, "prospect", upstream, text_field=kind.text_field, version=VERSION, reads=READS,
                       decide=decide, columns=fields if cfg.enabled else ("id",))


def prospect(instruction: str, response: str) -> Stage[BaseRecipe]:
    """The one-shot prospecting stage of a kind whose records are (``instruction``, ``response``) pairs."""
    return Stage("prospect", partial(prospect_stage, fields=(instruction, response)), READS,
                 split="whole")  # `[prospect] sample` is drawn from every record
