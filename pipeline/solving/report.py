"""The math report's calibration section: how often this build's verification is right, and what a
stricter or looser vote would do (``pipeline.solving.calibrate`` computes the figures)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.report import md_table
from pipeline.solving.calibrate import sentence


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def calibration_section(c: Mapping[str, Any]) -> str:
    unit = "each distinct program one vote" if c["votes"] == "distinct" else "each sample one vote"
    rule = (f"{unit}, agreement ≥ {c['min_agreement']:.0%} of k = {c['k']}"
            + (f", at least {c['min_votes']} distinct programs" if c["min_votes"] > 1 else ""))
    figures = [
        {"figure": "coverage (kept)", "value": f"{_pct(c['coverage'])} ({c['kept']} of {c['problems']})",
         "meaning": "share of problems with known answers this verification keeps"},
        {"figure": "precision", "value": f"{_pct(c['precision'])} ({c['correct']} of {c['kept']})",
         "meaning": "share of kept answers equal to the known answer"},
        {"figure": "false-positive rate", "value": _pct(c["false_positive_rate"]),
         "meaning": "of the problems whose majority answer is wrong, the share kept anyway"},
        {"figure": "pass@k (coverage@k)", "value": _pct(c["pass_at_k"]),
         "meaning": "problems where any of the k samples is right: what a perfect verifier could keep"},
        {"figure": "diversity", "value": f"{c['distinct_correct_programs']}",
         "meaning": "distinct correct programs per problem (mean)"},
    ]
    curve = [{"votes": p["votes"], "min votes": p["min_votes"], "agreement": _pct(p["agreement"]),
              "coverage": _pct(p["coverage"]), "precision": _pct(p["precision"])} for p in c["curve"]]
    lines = [
        sentence(c), "",
        f"The build's own solver (same model, sampling, k and vote: {rule}) solved {c['problems']} problems "
        f"whose answers are known; every one of its {c['samples']} samples is in the `verifier` configuration.",
        "", md_table(figures), "",
        "Precision and coverage at each vote threshold, counting every sample or each distinct program once "
        "(programs equal after normalising names, spacing and comments are one vote):", "",
        md_table(curve), "",
    ]
    for key, title in (("by_topic", "topic"), ("by_steps", "steps in the worked solution"),
                       ("by_learning_percentage", "learning percentage of the worked solution (low: learned "
                                                  "late by a proxy model, hard)")):
        rows = [{**r, "coverage": _pct(r["coverage"]), "precision": _pct(r["precision"])} for r in c.get(key, [])]
        if len(rows) > 1:
            lines += [f"Kept and right by {title} (does the vote keep only easy problems?):", "", md_table(rows), ""]
    return "\n".join(lines)
