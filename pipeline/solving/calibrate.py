"""How often verification is right: the build's own solver on problems whose answers are known.

Agreement of k samples says the samples agree, not that they are right. A
math build therefore also solves a set of gold problems (the shipped seeds,
or any GSM8K-style file) with exactly its own model, sampling, k and vote,
and reports what its verification would have done there:

- **coverage**: share of the gold problems verification keeps;
- **precision**: share of the kept problems whose answer equals the gold one;
- **false-positive rate**: of the problems whose majority answer is wrong,
  the share verification keeps anyway;
- **pass@k**: share of problems where any of the k samples is right
  (what a perfect verifier could keep);
- the **precision/coverage curve** over agreement thresholds, counting
  samples or distinct programs, so a maintainer sees what a stricter rule buys.

Every figure is computed from the verifier rows (one per executed sample) by
:func:`summarize`, so a reader of the published ``verifier`` configuration
can recompute it.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import BuildFailed, UserError
from pipeline.difficulty.config import DifficultyConfig
from pipeline.records import iter_jsonl
from pipeline.solving.answers import parse_answer, same_answer
from pipeline.solving.verify import Verified, vote

# one verifier row per executed sample: the `verifier` configuration of a math dataset
VERIFIER_SCHEMA_ID = "math_verifier.v1"
SAMPLES_SCHEMA = {"problem_id": pl.String, "source": pl.String, "question": pl.String, "sample_index": pl.Int64,
                  "code": pl.String, "program": pl.String, "status": pl.String, "value": pl.Float64,
                  "error": pl.String, "majority_answer": pl.Float64, "gold_answer": pl.Float64, "label": pl.String,
                  "problem_kept": pl.Boolean}


def samples_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SAMPLES_SCHEMA)


@dataclass(frozen=True, slots=True)
class GoldProblem:
    id: str
    question: str
    answer: float
    topic: str | None = None
    steps: int | None = None  # statements in the worked solution, where the file has one: how long the problem is
    solution: str | None = None  # the worked solution, where the file has one


def program_steps(source: object) -> int | None:
    """Statements in a solution function's body (its docstring not counted)."""
    if not isinstance(source, str):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
    if func is None:
        return None
    body = [n for n in func.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    return len(body)


def load_gold(path: Path, limit: int | None, question_field: str = "question", answer_field: str = "answer",
              exclude: Iterable[str] = ()) -> list[GoldProblem]:
    """Problems with a numeric answer (a number, or GSM8K's "... #### 42"), in file order; rows without
    one are skipped, and so are the questions in ``exclude`` (the worked example the solver is shown)."""
    skip = set(exclude)
    problems: list[GoldProblem] = []
    for lineno, row in iter_jsonl(path):
        question, answer = row.get(question_field), parse_answer(row.get(answer_field))
        if not isinstance(question, str) or not question.strip() or answer is None or question.strip() in skip:
            continue
        problems.append(GoldProblem(str(row.get("id", f"line-{lineno}")), question.strip(), answer,
                                    row.get("topic") if isinstance(row.get("topic"), str) else None,
                                    program_steps(row.get("solution")),
                                    row["solution"] if isinstance(row.get("solution"), str) else None))
        if limit and len(problems) >= limit:
            break
    if not problems:
        raise UserError(f"{path}: no problems with a numeric {answer_field!r} to calibrate on")
    return problems


def summarize(rows: Sequence[Mapping[str, Any]], k: int, min_agreement: float, distinct: bool,
              min_votes: int = 1) -> dict[str, Any]:
    """The calibration figures from verifier rows (``problem_id``, ``value``, ``program``, ``gold_answer``,
    ``problem_kept``): the build's own verdicts for the headline, the votes recomputed for the curve."""
    problems: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        problems[r["problem_id"]].append(r)
    n = len(problems)
    kept = right = wrong_majority = wrong_kept = any_right = 0
    distinct_right: list[int] = []
    points = {(rule, t): [0, 0] for rule in ("distinct", "samples") for t in range(1, k + 1)}  # -> [kept, right]
    for samples in problems.values():
        gold = samples[0]["gold_answer"]
        values = [s["value"] for s in samples]
        programs = [s["program"] for s in samples]
        majority, _ = vote(values, programs, distinct)
        correct = same_answer(majority, gold)
        any_right += any(same_answer(v, gold) for v in values)
        distinct_right.append(len({p for s, p in zip(values, programs, strict=True) if same_answer(s, gold)}))
        if samples[0]["problem_kept"]:
            kept += 1
            right += correct
        if majority is not None and not correct:
            wrong_majority += 1
            wrong_kept += bool(samples[0]["problem_kept"])
        for rule, dist in (("samples", False), ("distinct", True)):
            answer, votes = vote(values, programs, dist)
            for t in range(1, k + 1):
                if answer is not None and votes >= t:
                    points[(rule, t)][0] += 1
                    points[(rule, t)][1] += same_answer(answer, gold)
    curve = [{"votes": rule, "min_votes": t, "agreement": round(t / k, 3), "coverage": _share(c[0], n),
              "precision": _share(c[1], c[0]), "kept": c[0]} for (rule, t), c in sorted(points.items())]
    return {
        "problems": n, "samples": len(rows), "k": k, "min_agreement": min_agreement,
        "votes": "distinct" if distinct else "samples", "min_votes": min_votes,
        "kept": kept, "correct": right, "coverage": _share(kept, n), "precision": _share(right, kept),
        "false_positive_rate": _share(wrong_kept, wrong_majority), "pass_at_k": _share(any_right, n),
        "distinct_correct_programs": round(sum(distinct_right) / n, 3) if n else None,
        "statuses": dict(Counter(r["status"] for r in rows).most_common()),
        "curve": curve,
    }


def breakdown(problems: Sequence[Mapping[str, Any]], by: str) -> list[dict[str, Any]]:
    """Coverage and precision per value of ``by`` (``topic``, ``steps``) over calibration problems
    (``kept``, ``correct``): whether the vote keeps only the easy ones."""
    groups: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for p in problems:
        groups[p[by]].append(p)
    rows = []
    for value in sorted(groups, key=lambda v: (v is None, v)):
        g = groups[value]
        kept = [p for p in g if p["kept"]]
        rows.append({by: "?" if value is None else value, "problems": len(g), "kept": len(kept),
                     "coverage": _share(len(kept), len(g)), "precision": _share(sum(p["correct"] for p in kept),
                                                                                 len(kept))})
    return rows


BANDS = ("easiest quarter", "second quarter", "third quarter", "hardest quarter")


def difficulty_bands(solved: Sequence[Mapping[str, Any]], problems: Sequence[GoldProblem], cfg: DifficultyConfig,
                     seed: int) -> list[dict[str, Any]]:
    """Coverage and precision per quarter of learning percentage (LP), over the gold problems that come
    with a worked solution: a proxy model trained on (question, solution) says which are learned late
    (hard), so the table shows whether the vote keeps only the early-learned ones. Empty when fewer than
    eight problems have a solution (quarters of one or two say nothing)."""
    with_solution = [(s, p) for s, p in zip(solved, problems, strict=True) if p.solution]
    if len(with_solution) < 8:
        return []
    from pipeline.difficulty.score import score_pairs

    # only the trajectory is needed; IFD would load a second model for nothing
    scored = score_pairs([(p.question, p.solution or "") for _, p in with_solution],
                         cfg.model_copy(update={"ifd": False}), seed)
    percentile = scored.columns["difficulty"]  # 0 = easiest (highest LP) ... 1 = hardest
    banded = [{**s, "band": BANDS[min(3, int(d * 4))], "lp": lp}
              for (s, _), d, lp in zip(with_solution, percentile, scored.columns["learning_percentage"], strict=True)]
    rows = breakdown(banded, "band")
    order = {b: i for i, b in enumerate(BANDS)}
    for r in rows:
        lps = [b["lp"] for b in banded if b["band"] == r["band"]]
        r["mean LP"] = round(sum(lps) / len(lps), 3)
    return sorted(rows, key=lambda r: order[r["band"]])


def _share(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def sentence(summary: Mapping[str, Any]) -> str:
    """The card's one sentence, plain about a low precision."""
    n, cov, prec = summary["problems"], summary["coverage"], summary["precision"]
    if not summary["kept"]:
        return (f"On {n} problems with known answers, this verification kept none, so how often an answer it "
                "keeps is right is not known: treat its answers as unverified.")
    text = (f"On {n} problems with known answers, this verification kept {cov:.0%} and was right on "
            f"{prec:.0%} of those.")
    if prec < 0.8:
        share = "Most" if prec < 0.5 else f"About {1 - prec:.0%}"
        text += (f" {share} of the published answers may be wrong: verified here means the samples agreed, not "
                 "that the answer is right.")
    return text


@contextmanager
def said_on_failure(summary: Mapping[str, Any] | None) -> Iterator[None]:
    """A failed build still says what calibration measured: it is worth knowing when nothing survived."""
    try:
        yield
    except BuildFailed as failed:
        if summary is None:
            raise
        raise BuildFailed(f"{failed} {sentence(summary)}") from None


def verifier_rows(problem_id: str, question: str, solutions: Sequence[str | None], verified: Verified,
                  source: str, gold: float | None = None) -> list[dict[str, Any]]:
    """One row per executed sample: what a verifier model trains on (TinyGSM trained one on exactly this).

    ``label`` is ``correct``/``wrong`` against the gold answer where one is known, else
    ``agrees``/``disagrees`` with the majority answer; a sample that returned no number is wrong or
    disagrees."""
    rows = []
    for i, (code, s) in enumerate(zip(solutions, verified.samples, strict=True)):
        if gold is not None:
            label = "correct" if same_answer(s["value"], gold) else "wrong"
        else:
            label = "agrees" if same_answer(s["value"], verified.answer) else "disagrees"
        rows.append({"problem_id": problem_id, "source": source, "question": question, "sample_index": i,
                     "code": code, "program": s["program"], "status": s["status"], "value": s["value"],
                     "error": s["error"], "majority_answer": verified.answer, "gold_answer": gold, "label": label,
                     "problem_kept": verified.passed})
    return rows
