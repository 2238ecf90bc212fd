"""Verification by execution: run every sampled solution, keep a problem whose samples agree.

Every sample runs in the sandbox; those that return a finite number vote for
it. A vote is a distinct program by default (``Rule.distinct``): samples
that are the same program after normalising names, spacing and comments
(:mod:`pipeline.solving.canonical`) are one vote. A problem is kept when its
majority answer has at least ``min_agreement`` of ``k`` votes and at least
``min_votes`` votes; the kept solution, normalised as it will be published, is
run once more and must return that answer again (determinism). Every
sample's status, value and program id is recorded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.solving.config import VerifyConfig
from pipeline.sandbox import RunResult, Sandbox
from pipeline.solving.answers import answer_key
from pipeline.solving.canonical import program_key
from pipeline.solving.extract import FUNCTION, normalize_solution, program


@dataclass(frozen=True)
class Rule:
    """What keeps a problem: the majority answer's share of the k votes, and its number of votes."""

    min_agreement: float
    distinct: bool = True  # a vote is a distinct program (else: a sample)
    min_votes: int = 1

    @classmethod
    def of(cls, cfg: VerifyConfig) -> Rule:
        return cls(cfg.min_agreement, cfg.votes == "distinct", cfg.min_votes)


def vote(values: Sequence[float | None], programs: Sequence[str | None], distinct: bool,
         ) -> tuple[float | None, int]:
    """(majority answer, its votes): each sample one vote, or each distinct program one (``distinct``).
    Ties go to the answer reached first."""
    voters: dict[float, set[object]] = {}
    for i, (v, p) in enumerate(zip(values, programs, strict=True)):
        if v is not None:
            voters.setdefault(answer_key(v), set()).add(p if distinct and p is not None else i)
    if not voters:
        return None, 0
    best = max(voters, key=lambda a: len(voters[a]))  # max keeps the first of equals: the answer reached first
    return best, len(voters[best])


def numeric_value(result: RunResult | None) -> float | None:
    if result is None or not result.ok:
        return None
    v = result.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def sample_summary(result: RunResult | None, program_id: str | None = None) -> dict[str, Any]:
    """One sample as published: status, value, error, and the id of its canonical program."""
    if result is None:
        return {"status": "no_code", "value": None, "error": f"no {FUNCTION}() in the output", "program": None}
    value = numeric_value(result)
    error = result.error
    if result.ok and value is None:
        error = f"result is not a finite number: {result.value_repr or repr(result.value)}"[:300]
    return {"status": result.status if value is not None or not result.ok else "non_numeric", "value": value,
            "error": error, "program": program_id}


@dataclass(frozen=True)
class Verdict:
    """The vote over one problem's samples, before the re-run."""

    answer: float | None
    agreement: float  # share of the k samples that returned the answer
    votes: int  # distinct programs that returned it
    representative: int | None  # index of a sample that reached the majority answer
    samples: list[dict[str, Any]]
    reason: str | None = None
    detail: str = ""


def judge(results: Sequence[RunResult | None], rule: Rule | float,
          programs: Sequence[str | None] | None = None) -> Verdict:
    """The majority answer over k samples and whether it is kept; failed samples count against it.

    ``programs``: each sample's canonical program id (None: every sample is its own program)."""
    rule = rule if isinstance(rule, Rule) else Rule(rule)
    k = len(results)
    programs = list(programs) if programs is not None else [None] * k
    samples = [sample_summary(r, p) for r, p in zip(results, programs, strict=True)]
    values = [numeric_value(r) for r in results]
    if all(r is None for r in results):
        return Verdict(None, 0.0, 0, None, samples, "no_code", f"none of {k} samples wrote {FUNCTION}()")
    answer, _ = vote(values, programs, rule.distinct)
    if answer is None:
        statuses = Counter(s["status"] for s in samples)
        return Verdict(None, 0.0, 0, None, samples, "no_numeric_answer",
                       ", ".join(f"{s}×{n}" for s, n in statuses.most_common()))
    agreeing = [i for i, v in enumerate(values) if v is not None and answer_key(v) == answer]
    votes = len({programs[i] or i for i in agreeing})  # a sample without an id is its own program
    counted = votes if rule.distinct else len(agreeing)
    v = Verdict(answer, len(agreeing) / k, votes, agreeing[0], samples)
    unit = "distinct programs" if rule.distinct else "samples"
    if counted / k < rule.min_agreement:
        return replace(v, reason="low_agreement",
                       detail=f"{counted}/{k} {unit} agree on {answer:g}; needs {rule.min_agreement:.0%}")
    if votes < rule.min_votes:
        return replace(v, reason="too_few_programs",
                       detail=f"{votes} distinct programs reach {answer:g}; needs {rule.min_votes}")
    return v


@dataclass(frozen=True)
class Verified:
    """What verification found for one problem: the vote, and the code that will be published."""

    answer: float | None  # the majority answer (None when no sample returned a number)
    agreement: float  # share of the k samples that returned it
    votes: int  # distinct programs among them
    samples: list[dict[str, Any]]  # every sample's status, value, error and program id, in sampling order
    code: str | None  # the agreeing solution, normalised (None when the vote failed)
    reason: str | None = None  # why the problem is rejected; None: it passed
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.reason is None


def answer_type(answer: float) -> str:
    return "int" if float(answer).is_integer() else "float"


def verify(problems: Sequence[tuple[str, Sequence[str | None]]], sandbox: Sandbox,
           rule: Rule | float) -> list[Verified]:
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
        v = judge(res, rule, [program_key(code) for code in sols])
        if v.reason is not None:
            verified.append(Verified(v.answer, v.agreement, v.votes, v.samples, None, v.reason, v.detail))
            continue
        assert v.representative is not None and v.answer is not None
        code = normalize_solution(sols[v.representative] or "", question, answer_type(v.answer))
        if code is None:  # extraction already checked it parses; kept for safety
            verified.append(Verified(v.answer, v.agreement, v.votes, v.samples, None, "no_code",
                                     "the agreeing solution does not normalise"))
            continue
        finals.append((len(verified), v, code))
        verified.append(None)

    # The stored code, exactly as published, must run again to the same answer.
    reruns = sandbox.run_many([program(code) for _, _, code in finals])
    for (i, v, code), rerun in zip(finals, reruns, strict=True):
        value = numeric_value(rerun)
        if value is None or answer_key(value) != v.answer:
            verified[i] = Verified(v.answer, v.agreement, v.votes, v.samples, code, "nondeterministic",
                                   f"re-run gave {rerun.status} {value!r}, first runs agreed on {v.answer:g}")
        else:
            verified[i] = Verified(v.answer, v.agreement, v.votes, v.samples, code)
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
