"""The decontaminate stage: records sharing a long n-gram with, or near-duplicating, a text of the
recipe's evaluation files are rejected as ``contaminated`` (``pipeline.decontam``). Its config is
``DecontaminateConfig`` (``[decontaminate]``); it adds a sentence to the card."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipeline.recipe import BaseRecipe
from pipeline.records import ColumnView
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Stage, Verdicts, table_stage

VERSION = 2
READS = ("decontaminate", "dedup")  # the near-duplicate check hashes like dedup


def decontaminate_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext) -> StageResult:
    """Records sharing a ``decontaminate.ngram``-gram with a text of the recipe's evaluation files, or
    near-duplicating one, rejected as ``contaminated`` (``pipeline.decontam``); nothing named, nothing
    dropped, and the card says so."""
    cfg, text_field = recipe.decontaminate, kind.text_field

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

    return table_stage(recipe, "decontaminate", upstream, text_field=kind.text_field, version=VERSION,
                       reads=READS, decide=decide, columns=(text_field,))


def decontaminate() -> Stage[BaseRecipe]:
    """Decontamination of a kind's text field against the recipe's evaluation files."""
    return Stage("decontaminate", decontaminate_stage, READS, split="map")


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
