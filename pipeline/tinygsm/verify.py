"""The verify stage's records: each problem's sampled solutions through ``pipeline.solving.verify``."""

from __future__ import annotations

from typing import Any

from pipeline.records import rejection
from pipeline.sandbox import Sandbox
from pipeline.solving import Rule, verify
from pipeline.solving.calibrate import verifier_rows


def verify_problems(records: list[dict[str, Any]], sandbox: Sandbox, rule: Rule | float,
                    samples: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept records, with their code and ``verification: passed``; rejections with the reason).

    ``samples``, when given, receives one verifier row per executed sample (``pipeline.solving.calibrate``)."""
    kept, rejected = [], []
    results = verify([(r["question"], r["solutions"]) for r in records], sandbox, rule)
    for record, v in zip(records, results, strict=True):
        base = {**record, "samples": v.samples, "answer": v.answer, "answer_agreement": v.agreement,
                "answer_votes": v.votes}
        if v.code is not None:
            base["code"] = v.code
        if samples is not None:
            samples += verifier_rows(record["id"], record["question"], record["solutions"], v, "build")
        if v.passed:
            kept.append(base | {"verification": "passed"})
        else:
            rejected.append(rejection(base, "verify", v.reason or "", v.detail, "question"))
    return kept, rejected
