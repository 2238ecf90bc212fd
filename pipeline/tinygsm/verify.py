"""Verification by execution: run every sampled solution, keep problems whose samples agree.

A problem is kept when at least ``min_agreement`` of its ``k`` sampled
solutions run in the sandbox, return a finite number, and return the same
number (the majority answer); the kept solution is re-run once more and must
return that number again (determinism). Every sample's status is recorded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.records import rejection
from pipeline.sandbox import RunResult, Sandbox
from pipeline.tinygsm.extract import normalize_solution, program

_PLACES = 6  # answers equal to 6 decimal places are the same answer


def numeric_value(result: RunResult | None) -> float | None:
    if result is None or not result.ok:
        return None
    v = result.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class Verdict:
    answer: float | None
    agreement: float
    representative: int | None  # index of a sample that reached the majority answer
    samples: list[dict[str, Any]]
    reason: str | None = None
    detail: str = ""


def sample_summary(result: RunResult | None) -> dict[str, Any]:
    if result is None:
        return {"status": "no_code", "value": None, "error": "no simple_math_problem() in the output"}
    value = numeric_value(result)
    error = result.error
    if result.ok and value is None:
        error = f"result is not a finite number: {result.value_repr or repr(result.value)}"[:300]
    return {"status": result.status if value is not None or not result.ok else "non_numeric", "value": value,
            "error": error}


def judge(results: Sequence[RunResult | None], min_agreement: float) -> Verdict:
    """Majority answer over k samples; agreement counts every sample, failed ones too."""
    k = len(results)
    samples = [sample_summary(r) for r in results]
    values = [(i, round(v, _PLACES)) for i, r in enumerate(results) if (v := numeric_value(r)) is not None]
    if all(r is None for r in results):
        return Verdict(None, 0.0, None, samples, "no_code", f"none of {k} samples wrote {'simple_math_problem'}()")
    if not values:
        statuses = Counter(s["status"] for s in samples)
        return Verdict(None, 0.0, None, samples, "no_numeric_answer",
                       ", ".join(f"{s}×{n}" for s, n in statuses.most_common()))
    (answer, votes), = Counter(v for _, v in values).most_common(1)
    agreement = votes / k
    rep = next(i for i, v in values if v == answer)
    if agreement < min_agreement:
        return Verdict(answer, agreement, rep, samples, "low_agreement",
                       f"{votes}/{k} samples agree on {answer:g}; needs {min_agreement:.0%}")
    return Verdict(answer, agreement, rep, samples)


def answer_type(answer: float) -> str:
    return "int" if float(answer).is_integer() else "float"


def verify_problems(records: list[dict[str, Any]], sandbox: Sandbox, min_agreement: float,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every sample of every problem, judge, then re-run each keeper's final code once."""
    jobs = [(ri, si, program(code)) for ri, r in enumerate(records)
            for si, code in enumerate(r["solutions"]) if code is not None]
    outcomes = sandbox.run_many([p for _, _, p in jobs])
    results: list[list[RunResult | None]] = [[None] * len(r["solutions"]) for r in records]
    for (ri, si, _), out in zip(jobs, outcomes, strict=True):
        results[ri][si] = out

    kept, rejected, finals = [], [], []
    for record, res in zip(records, results, strict=True):
        verdict = judge(res, min_agreement)
        base = {**record, "samples": verdict.samples, "answer": verdict.answer,
                "answer_agreement": verdict.agreement}
        if verdict.reason is not None:
            rejected.append(rejection(base, "verify", verdict.reason, verdict.detail, "question"))
            continue
        code = normalize_solution(record["solutions"][verdict.representative], record["question"],
                                  answer_type(verdict.answer))
        if code is None:  # extraction already checked it parses; kept for safety
            rejected.append(rejection(base, "verify", "no_code", "the agreeing solution does not normalise",
                                      "question"))
            continue
        finals.append((base | {"code": code}))

    # The stored code, exactly as published, must run again to the same answer.
    reruns = sandbox.run_many([program(r["code"]) for r in finals])
    for record, rerun in zip(finals, reruns, strict=True):
        value = numeric_value(rerun)
        if value is None or round(value, _PLACES) != record["answer"]:
            detail = f"re-run gave {rerun.status} {value!r}, first runs agreed on {record['answer']:g}"
            rejected.append(rejection(record, "verify", "nondeterministic", detail, "question"))
        else:
            kept.append(record | {"verification": "passed"})
    return kept, rejected


def reexecute(rows: Sequence[dict[str, Any]], sandbox: Sandbox) -> list[str]:
    """Run each published record's stored code again; describe every record whose answer differs."""
    results = sandbox.run_many([program(r["code"]) for r in rows])
    problems = []
    for row, res in zip(rows, results, strict=True):
        value = numeric_value(res)
        if value is None or round(value, _PLACES) != row["answer"]:
            problems.append(f"{row['id']}: stored answer {row['answer']:g}, re-run gave {res.status} {value!r}")
    return problems
