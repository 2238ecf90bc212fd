"""Two math builds' calibration side by side, per generated token: for compute-matched choices (one
model at k = 8 against another at k = 2, a higher temperature against more samples)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.report import md_table


def _calibration(build: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest_path = build / "dataset" / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{build}: not published yet (no dataset/manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    calibration = manifest.get("calibration")
    if not calibration:
        raise UserError(f"{build}: no calibration in its manifest (not a math build, or built with "
                        "[calibrate] enabled = false)")
    return manifest, calibration


def compare_text(builds: Sequence[Path]) -> str:
    """A markdown table: one column per build, one row per figure."""
    columns = []
    for build in builds:
        m, c = _calibration(build)
        tokens = c.get("completion_tokens") or 0
        recipe = m.get("recipe", {})
        sampling = recipe.get("solution_sampling", {})
        right = c["correct"]
        columns.append((m["build_id"], {
            "model": ", ".join(m.get("models", [])) or "?",
            "k / temperature": f"{c['k']} / {sampling.get('temperature', '?')}",
            "vote": f"{c['votes']}, agreement ≥ {c['min_agreement']:.0%}, ≥ {c['min_votes']} programs",
            "calibration problems": c["problems"],
            "coverage": _pct(c["coverage"]), "precision": _pct(c["precision"]),
            "false-positive rate": _pct(c["false_positive_rate"]), "pass@k": _pct(c["pass_at_k"]),
            "solution tokens": f"{tokens:,}",
            "tokens per problem": f"{tokens / c['problems']:,.0f}" if c["problems"] else "–",
            "tokens per right kept answer": f"{tokens / right:,.0f}" if right else "– (none right)",
        }))
    rows = [{"figure": f, **{bid: col[f] for bid, col in columns}} for f in columns[0][1]]
    return md_table(rows)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"
