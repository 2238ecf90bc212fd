"""The dedup stage: exact and MinHash near-duplicates of the kind's text field within the build
(``pipeline.dedup``), then records other builds under the output root already published
(``pipeline.published_index``). It adds ``dedup_cluster``. Its config is ``DedupConfig`` (``[dedup]``)."""

from __future__ import annotations

from functools import partial

import polars as pl

from pipeline.dedup import duplicate_verdicts
from pipeline.published_index import PublishedIndex
from pipeline.recipe import BaseRecipe
from pipeline.records import ColumnView
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Stage, Verdicts, table_stage

VERSION = 2  # bump when its logic changes, so no build reuses old outputs
READS = ("dedup",)


def dedup_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext, *,
                score_field: str | None = None) -> StageResult:
    """Within-build duplicates of the kind's text field, then records other builds already published
    (cross-build index); ``score_field`` decides which record of a cluster stays."""
    cfg, text_field = recipe.dedup, kind.text_field
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

    return table_stage(recipe, "dedup", upstream, version=VERSION, reads=READS, decide=decide, text_field=text_field,
                       columns=("id", text_field, *((score_field,) if score_field else ())), extra={
        "field": text_field, "published": index.fingerprint(recipe.name) if cfg.cross_build else None})


def dedup(score_field: str | None = None) -> Stage[BaseRecipe]:
    """The dedup stage over a kind's text field; ``score_field``: the record of a cluster with the highest
    value stays (else the first)."""
    return Stage("dedup", partial(dedup_stage, score_field=score_field), READS, split="whole")  # clusters
