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

from collections.abc import Iterable
from dataclasses import asdict, dataclass

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
    from radon.metrics import h_visit
    from radon.raw import analyze
    from radon.visitors import ComplexityVisitor

    try:
        cyclomatic = ComplexityVisitor.from_code(source).total_complexity
        halstead = h_visit(source).total
        raw = analyze(source)
    except (SyntaxError, ValueError, TypeError, RecursionError):  # radon parses with ast: what it raises
        return None
    return CodeMetrics(lines=raw.sloc, cyclomatic=int(cyclomatic), halstead_volume=float(halstead.volume),
                       halstead_difficulty=float(halstead.difficulty), operations=int(halstead.N1),
                       difficulty=(cyclomatic + float(halstead.difficulty)) / 2)


def code_columns(sources: Iterable[str | None]) -> dict[str, list[float | int | None]]:
    """``COLUMNS`` for each source in order, null where there is no code or it does not parse."""
    out: dict[str, list[float | int | None]] = {c: [] for c in COLUMNS}
    for source in sources:
        metrics = code_metrics(source) if source else None
        values = metrics.columns() if metrics else dict.fromkeys(COLUMNS)
        for c in COLUMNS:
            out[c].append(values[c])
    return out
