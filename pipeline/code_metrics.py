"""How hard a program reads, by the static metrics of "Curriculum Learning for Small Code Language Models"
(Naïr et al. 2024): length, cyclomatic complexity, Halstead volume and difficulty, operations, and the
paper's overall metric.

The metrics are radon's (a maintained implementation of McCabe's and Halstead's definitions):

* ``lines``: source lines of code, without blank lines, comments or docstrings;
* ``cyclomatic``: 1 + the program's decision points (``if``/``elif``, loops, ``and``/``or``, comprehension
  conditions, ``except``...), McCabe's ``E - N + 2`` for the program as one graph;
* ``halstead_volume``: ``N * log2(n)`` over operators and operands (``N`` uses, ``n`` distinct);
* ``halstead_difficulty``: ``(n1 / 2) * (N2 / n2)``: distinct operators times the reuse of operands;
* ``operations``: operator uses (Halstead's ``N1``);
* ``difficulty``: the paper's overall metric, the mean of cyclomatic complexity and Halstead difficulty
  (the paper's exact weighting is not published; the mean is what its summary states).

A program that does not parse has no metrics (None): a record whose code is prose, or was cut off.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

COLUMNS = ("code_lines", "code_cyclomatic", "code_halstead_volume", "code_halstead_difficulty",
           "code_operations", "code_difficulty")


@dataclass(frozen=True)
class CodeMetrics:
    lines: int
    cyclomatic: int
    halstead_volume: float
    halstead_difficulty: float
    operations: int
    difficulty: float

    def columns(self) -> dict[str, float | int]:
        """The record columns (``COLUMNS``), values rounded to what a plot or a curriculum can tell apart."""
        return {f"code_{k}": round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def code_metrics(source: str) -> CodeMetrics | None:
    """The metrics of ``source`` (Python), or None when it does not parse."""
    from radon.metrics import h_visit_ast
    from radon.raw import analyze
    from radon.visitors import ComplexityVisitor

    try:
        tree = ast.parse(source)  # once, for both visitors (about half of the cost otherwise)
        cyclomatic = ComplexityVisitor.from_ast(tree).total_complexity
        halstead = h_visit_ast(tree).total
        raw = analyze(source)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):  # what parsing code can raise
        return None
    return CodeMetrics(lines=raw.sloc, cyclomatic=int(cyclomatic), halstead_volume=float(halstead.volume),
                       halstead_difficulty=float(halstead.difficulty), operations=int(halstead.N1),
                       difficulty=(cyclomatic + float(halstead.difficulty)) / 2)


def code_fields(source: str | None) -> dict[str, float | int | None]:
    """A record's ``COLUMNS``: its program's metrics, or nulls when it has none that parses."""
    metrics = code_metrics(source) if source else None
    return metrics.columns() if metrics else dict.fromkeys(COLUMNS)


def code_columns(sources: Iterable[str | None]) -> dict[str, list[float | int | None]]:
    """``COLUMNS`` for each source in order, null where there is no code or it does not parse."""
    out: dict[str, list[float | int | None]] = {c: [] for c in COLUMNS}
    for source in sources:
        values = code_fields(source)
        for c in COLUMNS:
            out[c].append(values[c])
    return out


def code_section(records: Sequence[dict[str, Any]], format_example: Callable[[dict[str, Any]], str]) -> str | None:
    """The report's Code difficulty section: each metric's spread over the published programs, and the
    easiest and hardest of them by the overall metric. None when no record carries a program."""
    scored = sorted((r for r in records if r.get("code_difficulty") is not None),
                    key=lambda r: (r["code_difficulty"], r["id"]))
    if not scored:
        return None

    def spread(column: str) -> str:
        values = sorted(r[column] for r in scored)
        q = [values[min(len(values) - 1, int(p * len(values)))] for p in (0.25, 0.5, 0.75)]
        return " | ".join(f"{v:g}" for v in (values[0], *q, values[-1]))

    names = {"code_lines": "lines", "code_cyclomatic": "cyclomatic complexity",
             "code_halstead_volume": "Halstead volume", "code_halstead_difficulty": "Halstead difficulty",
             "code_operations": "operations", "code_difficulty": "overall (mean of cyclomatic and Halstead difficulty)"}
    lines = [f"Static metrics of the {len(scored)} published programs (docs/difficulty.md#code-metrics); a "
             "curriculum can order by any of them (`ShardDataset(order=Curriculum(\"code_difficulty\"))`, "
             "docs/loader.md).", "",
             "| metric | min | 25% | median | 75% | max |", "|---|---|---|---|---|---|",
             *(f"| {names[c]} | {spread(c)} |" for c in COLUMNS if c in scored[0]), ""]  # a mix carries one
    picks = [("Easiest", scored[0])] + ([("Hardest", scored[-1])] if len(scored) > 1 else [])
    for title, r in picks:
        parts = [f"overall {r['code_difficulty']:g}"]
        if "code_cyclomatic" in r:
            parts += [f"cyclomatic {r['code_cyclomatic']}", f"Halstead difficulty {r['code_halstead_difficulty']:g}"]
        lines += [f"**{title}** ({', '.join(parts)})", "", format_example(r), ""]
    return "\n".join(lines)
