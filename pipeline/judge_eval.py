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
:mod:`pipeline.fluency`), and the LLM judge of a recipe's ``[judge]``
(:mod:`pipeline.judge`): one score per criterion of the set's rubric, and
their mean. A text whose verdict could not be read has no score; AUROC ranks
it below every scored text, so an unreadable judge scores near chance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.difficulty.learning_percentage import auroc
from pipeline.errors import UserError
from pipeline.paths import DATA_DIR
from pipeline.recipe import BaseRecipe
from pipeline.records import iter_jsonl

LABELED_DIR = DATA_DIR / "judge_eval"
SETS = {"stories": "stories.jsonl", "math": "math.jsonl", "instructions": "instructions.jsonl"}


@dataclass(frozen=True)
class Labeled:
    id: str
    good: bool
    failure: str | None
    text: str
    fields: Mapping[str, object] = field(default_factory=dict)  # the rest of the row (a story's words...)


def load_labeled(path: Path) -> list[Labeled]:
    items = []
    for lineno, row in iter_jsonl(path):
        if row.get("label") not in ("good", "bad") or not isinstance(row.get("text"), str):
            raise UserError(f"{path}:{lineno}: a labeled text needs label good|bad and a text")
        rest = {k: v for k, v in row.items() if k not in ("id", "label", "failure", "text")}
        items.append(Labeled(str(row.get("id", lineno)), row["label"] == "good", row.get("failure"), row["text"], rest))
    if not any(i.good for i in items) or all(i.good for i in items):
        raise UserError(f"{path}: needs both good and bad texts")
    return items


def separation(items: Sequence[Labeled], scores: Sequence[float | None]) -> list[dict[str, object]]:
    """AUROC of ``scores`` (higher = better) for good against all bad, and against each failure; with how
    many texts of each comparison got no score (ranked below every scored one)."""
    s = np.array([np.nan if x is None else x for x in scores], dtype=float)
    good = np.array([i.good for i in items])

    ranked = np.where(np.isnan(s), -np.inf, s)

    def row(against: str, pick: np.ndarray) -> dict[str, object]:
        return {"against": against, "good": int(good.sum()), "bad": int(pick.sum() - good.sum()),
                "unscored": int(np.isnan(s[pick]).sum()), "auroc": round(auroc(ranked[pick], good[pick]), 3)}

    rows = [row("all bad", np.ones(len(items), dtype=bool))]
    for failure in sorted({i.failure for i in items if not i.good and i.failure}):
        rows.append(row(failure, good | np.array([i.failure == failure for i in items])))
    return rows


Scores = list[float | None]
# (set name, its labeled texts) -> one list of scores per named column, higher = better
Signal = Callable[[str, Sequence[Labeled]], dict[str, Scores]]


def fluency_signal(model: str) -> Signal:
    from pipeline.difficulty.ifd import LlamaScorer
    from pipeline.fluency import fluency_losses

    scorer = LlamaScorer(model)

    def score(name: str, items: Sequence[Labeled]) -> dict[str, Scores]:
        losses = fluency_losses([i.text for i in items], scorer)
        return {f"fluency ({model})": [None if x is None else -x for x in losses]}

    return score


KIND_OF_SET = {"stories": "tinystories", "math": "tinygsm", "instructions": "evol_instruct"}


def as_record(name: str, item: Labeled) -> dict[str, Any]:
    """A labeled text as the record its kind's rubric presents to the judge."""
    f = item.fields
    if name == "stories":
        return {"id": item.id, "story": item.text, "words": f.get("words") or [], "features": f.get("features") or []}
    if name == "math":
        return {"id": item.id, "question": item.text, "code": f.get("code"), "answer": f.get("answer")}
    return {"id": item.id, "instruction": item.text, "parent_instruction": f.get("parent")}


def judge_signal(recipe: BaseRecipe) -> Signal:
    """The judge a recipe configures (``[judge]``, its backend or the recipe's), through the recipe's
    response cache: one column per numeric criterion and their mean."""
    from pipeline.batches import Models
    from pipeline.judge import judge_records
    from pipeline.kinds import get_kind
    from pipeline.llm import sampling_params
    from pipeline.llm.types import derive_seed

    cfg = recipe.judge

    def score(name: str, items: Sequence[Labeled]) -> dict[str, Scores]:
        rubric = get_kind(KIND_OF_SET[name]).rubric
        assert rubric is not None
        with Models(recipe.output_root) as models:
            backend = models.open(cfg.backend or recipe.backend)
            verdicts = judge_records([as_record(name, i) for i in items], rubric, backend,
                                     sampling_params(cfg.sampling), seeds=[derive_seed("judge-eval", i.id) for i in items],
                                     retries=cfg.retries, max_chars=cfg.max_chars)
        label = backend.model_id.split("@")[0]
        out: dict[str, Scores] = {f"judge {label}: {c}": [None if v.scores is None else float(v.scores[c])
                                                         for v in verdicts] for c in rubric.numeric}
        out[f"judge {label}: mean"] = [None if v.scores is None else sum(float(v.scores[c]) for c in rubric.numeric)
                                       / len(rubric.numeric) for v in verdicts]
        return out

    return score


def evaluate(sets: Sequence[str], signals: Sequence[Signal], directory: Path = LABELED_DIR,
             ) -> list[dict[str, object]]:
    """One row per (set, signal column, against): the AUROC table ``tinyforge judge-eval`` prints."""
    rows = []
    for name in sets:
        items = load_labeled(directory / SETS[name])
        for signal in signals:
            for column, scores in signal(name, items).items():
                rows += [{"set": name, "signal": column, **r} for r in separation(items, scores)]
    return rows


def table(rows: Sequence[dict[str, object]]) -> str:
    from pipeline.report import md_table

    return md_table([{"set": r["set"], "signal": r["signal"], "good vs": r["against"], "good": r["good"],
                      "bad": r["bad"], "no score": r["unscored"], "AUROC": r["auroc"]} for r in rows])
