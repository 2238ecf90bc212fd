"""How well a quality signal separates good records from bad ones: ``tinyforge judge-eval``.

The labeled sets ship in ``data/judge_eval/`` (original texts written for
tinyforge): good records of each kind and bad ones of each failure seen in
real builds (incoherent, meta-text, off-topic, missing words, unfinished,
ungrammatical stories; wrong or ill-posed math; evolved "instructions" that
are statements, answers or talk about prompts). A signal scores every text;
its AUROC says how often a random good text scores better than a random bad
one: 1.0 separates them completely, 0.5 is chance. It is given over all bad
texts and per failure, so a maintainer sees what a signal cannot see.

Signals: ``fluency`` (a small model's mean token loss, lower is better,
:mod:`pipeline.fluency`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.difficulty.learning_percentage import auroc
from pipeline.errors import UserError
from pipeline.paths import DATA_DIR
from pipeline.records import iter_jsonl

LABELED_DIR = DATA_DIR / "judge_eval"
SETS = {"stories": "stories.jsonl", "math": "math.jsonl", "instructions": "instructions.jsonl"}


@dataclass(frozen=True)
class Labeled:
    id: str
    good: bool
    failure: str | None
    text: str


def load_labeled(path: Path) -> list[Labeled]:
    items = []
    for lineno, row in iter_jsonl(path):
        if row.get("label") not in ("good", "bad") or not isinstance(row.get("text"), str):
            raise UserError(f"{path}:{lineno}: a labeled text needs label good|bad and a text")
        items.append(Labeled(str(row.get("id", lineno)), row["label"] == "good", row.get("failure"), row["text"]))
    if not any(i.good for i in items) or all(i.good for i in items):
        raise UserError(f"{path}: needs both good and bad texts")
    return items


def separation(items: Sequence[Labeled], scores: Sequence[float | None]) -> list[dict[str, object]]:
    """AUROC of ``scores`` (higher = better) for good against all bad, and against each failure."""
    s = np.array([np.nan if x is None else x for x in scores], dtype=float)
    good = np.array([i.good for i in items])
    rows = [{"against": "all bad", "bad": int((~good).sum()), "auroc": round(auroc(s, good), 3)}]
    for failure in sorted({i.failure for i in items if not i.good and i.failure}):
        pick = good | np.array([i.failure == failure for i in items])
        rows.append({"against": failure, "bad": int(pick.sum() - good.sum()),
                     "auroc": round(auroc(s[pick], good[pick]), 3)})
    return rows


Signal = Callable[[Sequence[str]], list[float | None]]  # texts -> scores, higher = better


def fluency_signal(model: str) -> Signal:
    from pipeline.difficulty.ifd import LlamaScorer
    from pipeline.fluency import fluency_losses

    scorer = LlamaScorer(model)
    return lambda texts: [None if x is None else -x for x in fluency_losses(texts, scorer)]


def evaluate(sets: Sequence[str], signals: dict[str, Signal], directory: Path = LABELED_DIR,
             ) -> list[dict[str, object]]:
    """One row per (set, signal, against): the AUROC table ``tinyforge judge-eval`` prints."""
    rows = []
    for name in sets:
        items = load_labeled(directory / SETS[name])
        for signal, score in signals.items():
            scores = score([i.text for i in items])
            for r in separation(items, scores):
                good = [x for x, i in zip(scores, items, strict=True) if i.good and x is not None]
                rows.append({"set": name, "signal": signal, **r, "good": len(good)})
    return rows


def table(rows: Sequence[dict[str, object]]) -> str:
    from pipeline.report import md_table

    return md_table([{"set": r["set"], "signal": r["signal"], "good vs": r["against"], "good": r["good"],
                      "bad": r["bad"], "AUROC": r["auroc"]} for r in rows])
