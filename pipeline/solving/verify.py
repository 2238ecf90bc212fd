"""Verification by execution: run every sampled solution, keep a problem whose samples agree.

A problem is kept when at least ``min_agreement`` of its ``k`` sampled
solutions run in the sandbox, return a finite number, and return the same
number (the majority answer); the kept solution, normalised as it will be
published, is run once more and must return that number again
(determinism). Every sample's status is recorded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.sandbox import RunResult, Sandbox
from pipeline.solving.answers import answer_key
from pipeline.solving.extract import FUNCTION, normalize_solution, program


def numeric_value(result: RunResult | None) -> float | None:
    if result is None or not result.ok:
        return None
    v = result.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def sample_summary(result: RunResult | None) -> dict[str, Any]:
    """One sample as published: status, value, error."""
    if result is None:
        return {"status": "no_code", "value": None, "error": f"no {FUNCTION}() in the output"}
    value = numeric_value(result)
    error = result.error
    if result.ok and value is None:
        error = f"result is not a finite number: {result.value_repr or repr(result.value)}"[:300]
    return {"status": result.status if value is not None or not result.ok else "non_numeric", "value": value,
            "error": error}


@dataclass(frozen=True)
class Verdict:
    """The vote over one problem's samples, before the re-run."""

    answer: float | None
    agreement: float
    representative: int | None  # index of a sample that reached the majority answer
    samples: list[dict[str, Any]]
    reason: str | None = None
    detail: str = ""


def judge(results: Sequence[RunResult | None], min_agreement: float) -> Verdict:
    """Majority answer over k samples; agreement counts every sample, failed ones too."""
    k = len(results)
    samples = [sample_summary(r) for r in results]
    values = [(i, answer_key(v)) for i, r in enumerate(results) if (v := numeric_value(r)) is not None]
    if all(r is None for r in results):
        return Verdict(None, 0.0, None, samples, "no_code", f"none of {k} samples wrote {FUNCTION}()")
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


@dataclass(frozen=True)
class Verified:
    """What verification found for one problem: the vote, and the code that will be published."""

    answer: float | None  # the majority answer (None when no sample returned a number)
    agreement: float  # share of the k samples that returned it
    samples: list[dict[str, Any]]  # every sample's status, value and error, in sampling order
    code: str | None  # the agreeing solution, normalised (None when the vote failed)
    reason: str | None = None  # why the problem is rejected; None: it passed
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.reason is None


def answer_type(answer: float) -> str:
    return "int" if float(answer).is_integer() else "float"


def verify(problems: Sequence[tuple[str, Sequence[str | None]]], sandbox: Sandbox,
           min_agreement: float) -> list[Verified]:
    """Verify each (question, sampled solution sources) pair: run every sample, vote, re-run the keeper.

    All programs of all problems go to the sandbox at once (its workers run them in parallel)."""
    jobs = [(pi, si, program(code)) for pi, (_, sols) in enumerate(problems) for si, code in enumerate(sols)
            if code is not None]
    outcomes = sandbox.run_many([p for _, _, p in jobs])
    results: list[list[RunResult | None]] = [[None] * len(sols) for _, sols in problems]
    for (pi, si, _), out in zip(jobs, outcomes, strict=True):
        results[pi][si] = out

    verified: list[Verified | None] = []
    finals: list[tuple[int, Verdict, str]] = []
    for (question, sols), res in zip(problems, results, strict=True):
        v = judge(res, min_agreement)
        if v.reason is not None:
            verified.append(Verified(v.answer, v.agreement, v.samples, None, v.reason, v.detail))
            continue
        assert v.representative is not None and v.answer is not None
        code = normalize_solution(sols[v.representative] or "", question, answer_type(v.answer))
        if code is None:  # extraction already checked it parses; kept for safety
            verified.append(Verified(v.answer, v.agreement, v.samples, None, "no_code",
                                     "the agreeing solution does not normalise"))
            continue
        finals.append((len(verified), v, code))
        verified.append(None)

    # The stored code, exactly as published, must run again to the same answer.
    reruns = sandbox.run_many([program(code) for _, _, code in finals])
    for (i, v, code), rerun in zip(finals, reruns, strict=True):
        value = numeric_value(rerun)
        if value is None or answer_key(value) != v.answer:
            verified[i] = Verified(v.answer, v.agreement, v.samples, code, "nondeterministic",
                                   f"re-run gave {rerun.status} {value!r}, first runs agreed on {v.answer:g}")
        else:
            verified[i] = Verified(v.answer, v.agreement, v.samples, code)
    return [v for v in verified if v is not None]


def reexecute(rows: Sequence[dict[str, Any]], sandbox: Sandbox) -> list[str]:
    """Run each published record's stored ``code`` again; describe every record whose ``answer`` differs."""
    results = sandbox.run_many([program(r["code"]) for r in rows])
    problems = []
    for row, res in zip(rows, results, strict=True):
        value = numeric_value(res)
        if value is None or answer_key(value) != row["answer"]:
            problems.append(f"{row['id']}: stored answer {row['answer']:g}, re-run gave {res.status} {value!r}")
    return problems
