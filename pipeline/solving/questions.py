"""Checks on a generated problem statement, before any solution is sampled for it.

TinyGSM dropped problems "too short or [that] do not contain numbers"; small
models also answer their own problem inside it, or copy the seed.
"""

from __future__ import annotations

import re

from pipeline.solving.config import QuestionFilterConfig
from pipeline.text import markup_kind, non_ascii_fraction, normalize, words

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_LEAK = re.compile(r"=|\banswer\b|\bsolution\b|\bso (?:she|he|they) (?:has|have|had|needs?|gets?)\b", re.IGNORECASE)

REASONS = ("empty_question", "markup", "non_english", "too_short", "too_long", "too_few_numbers",
           "no_question", "leaks_solution", "copied_seed")


def check_question(question: str, seed_question: str, cfg: QuestionFilterConfig) -> tuple[str, str] | None:
    if not question:
        return "empty_question", ""
    if kind := markup_kind(question):
        return "markup", kind
    if (frac := non_ascii_fraction(question)) > 0.02:
        return "non_english", f"non-ASCII share {frac:.3f}"
    n = len(words(question))
    if n < cfg.min_words:
        return "too_short", f"{n} words < {cfg.min_words}"
    if n > cfg.max_words:
        return "too_long", f"{n} words > {cfg.max_words}"
    if (k := len(_NUMBER.findall(question))) < cfg.min_numbers:
        return "too_few_numbers", f"{k} numbers < {cfg.min_numbers}"
    if cfg.require_question and not question.rstrip().endswith("?"):
        return "no_question", repr(question[-40:])
    if m := _LEAK.search(question):
        return "leaks_solution", repr(m.group(0))
    if normalize(question) == normalize(seed_question):
        return "copied_seed", ""
    return None
