"""The score stage: proxy-model difficulty of every record's (instruction, response) pair
(``pipeline.difficulty``: loss trajectories, learning percentage, S2L, IFD). Its config is
``DifficultyConfig`` (``[difficulty]``); it adds the difficulty columns and the report's difficulty
section."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import polars as pl

from pipeline.difficulty import COLUMNS as DIFFICULTY_COLUMNS
from pipeline.recipe import BaseRecipe
from pipeline.report import histogram, md_table
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Pairs, Stage, Verdicts, table_stage

VERSION = 1
READS = ("seed", "difficulty")


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


def score_stage(recipe: BaseRecipe, upstream: StageResult, kind: KindContext, *,
                fields: tuple[str, str]) -> StageResult:
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

    return table_stage(recipe, "score", upstream, version=VERSION, reads=READS, decide=decide,
                       text_field=kind.text_field, columns=fields if cfg.enabled else ("id",))


def score(instruction: str, response: str) -> Stage[BaseRecipe]:
    """The difficulty stage of a kind whose records are (``instruction``, ``response``) field pairs."""
    return Stage("score", partial(score_stage, fields=(instruction, response)), READS,
                 split="whole")  # the proxy is trained on the build's records
