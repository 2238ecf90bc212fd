"""Fluency: a small pretrained model's mean token loss on a record's text.

The embedded SmolLM2-135M is far too small to judge a story when asked (it
rated 4 coherent and 4 incoherent stories 1 of 10 alike), but how surprised
it is by a text says a good deal: its mean token cross-entropy separated the
same eight completely (``docs/judge.md`` has the figures on the shipped
labeled set). Lower is more fluent. The score is L(A) of IFD
(:mod:`pipeline.difficulty.ifd`) for the text alone, so it is the same
number a reader can recompute with any llama.cpp build of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import Field

from pipeline.config import Section


class FluencyConfig(Section):
    """The fluency score: a small pretrained model's mean token loss on each record's text (see docs/judge.md)."""

    enabled: bool = True
    model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    max_loss: float | None = Field(
        None, gt=0.0, description="reject records whose mean token loss is above this, as `disfluent` "
        "(default: score only)")


class TokenLosses(Protocol):
    def tokens(self, text: str, bos: bool) -> list[int]: ...
    def losses(self, tokens: list[int]) -> Sequence[float]: ...


def fluency_losses(texts: Sequence[str], scorer: TokenLosses) -> list[float | None]:
    """Mean token loss of each text (None for a text without a token to score)."""
    out: list[float | None] = []
    for text in texts:
        losses = scorer.losses(scorer.tokens(text, bos=True)) if text.strip() else []
        out.append(round(float(sum(losses) / len(losses)), 4) if len(losses) else None)
    return out


def too_disfluent(loss: float | None, max_loss: float | None) -> bool:
    return max_loss is not None and (loss is None or not math.isfinite(loss) or loss > max_loss)


def fluency_section(records: Sequence[dict[str, Any]], format_example: Callable[[dict[str, Any]], str],
                    max_loss: float | None) -> str | None:
    """The report's Fluency section: the loss distribution and the least and most fluent records, so a
    maintainer can read what a threshold would cut. None when nothing was scored."""
    scored = sorted((r for r in records if r.get("fluency_loss") is not None), key=lambda r: r["fluency_loss"])
    if not scored:
        return None
    losses = [r["fluency_loss"] for r in scored]

    def q(p: float) -> float:
        return losses[min(len(losses) - 1, int(p * len(losses)))]

    lines = [f"Mean token loss of each published record's text under the fluency model (lower is more fluent; "
             f"`max_loss` {'= ' + str(max_loss) if max_loss is not None else 'not set: scored only'}). "
             "What it separates, measured on labeled texts: docs/judge.md.", "",
             "| records | min | 25% | median | 75% | max |", "|---|---|---|---|---|---|",
             f"| {len(losses)} | {losses[0]:.2f} | {q(0.25):.2f} | {q(0.5):.2f} | {q(0.75):.2f} | {losses[-1]:.2f} |",
             ""]
    least = scored[::-1][:2]
    most = [r for r in scored[:2] if r not in least]
    for title, rows in (("Least fluent", least), ("Most fluent", most)):
        for r in rows:
            lines += [f"**{title}** (loss {r['fluency_loss']:.2f}): {format_example(r)}", ""]
    return "\n".join(lines)
