"""The verify stage's records: each problem's sampled solutions through ``pipeline.solving.verify``."""

from __future__ import annotations

from typing import Any

from pipeline.records import rejection
from pipeline.sandbox import Sandbox
from pipeline.solving import verify


def verify_problems(records: list[dict[str, Any]], sandbox: Sandbox, min_agreement: float,
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept records, with their code and ``verification: passed``; rejections with the reason)."""
    kept, rejected = [], []
    results = verify([(r["question"], r["solutions"]) for r in records], sandbox, min_agreement)
    for record, v in zip(records, results, strict=True):
        base = {**record, "samples": v.samples, "answer": v.answer, "answer_agreement": v.agreement}
        if v.code is not None:
            base["code"] = v.code
        if v.passed:
            kept.append(base | {"verification": "passed"})
        else:
            rejected.append(rejection(base, "verify", v.reason or "", v.detail, "question"))
    return kept, rejected
