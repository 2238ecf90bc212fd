"""The fluency stage: a small pretrained model's mean token loss on each record's text, the
``fluency_loss`` column (``pipeline.fluency``); above ``[fluency] max_loss`` a record is rejected."""

from __future__ import annotations

import polars as pl

from pipeline.recipe import BaseRecipe
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Stage, Verdicts, table_stage

VERSION = 1
READS = ("fluency",)


def fluency_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    """The fluency score of every record's text (``pipeline.fluency``); above ``fluency.max_loss`` a record
    is rejected as ``disfluent``, with its loss in the detail."""
    cfg, text_field = recipe.fluency, kind.text_field

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

    return table_stage(recipe, "fluency", upstream, version=VERSION, reads=READS, decide=decide, text_field=text_field,
                       columns=(text_field,) if cfg.enabled else ("id",), extra={"field": text_field})


def fluency() -> Stage[BaseRecipe]:
    """The fluency stage over a kind's text field."""
    return Stage("fluency", fluency_stage, READS, split="map")
