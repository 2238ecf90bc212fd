"""Code metrics against values counted by hand from McCabe's and Halstead's definitions."""

from __future__ import annotations

import math

import pytest

from pipeline.code_metrics import COLUMNS, code_columns, code_metrics, code_section

# Operators: + - > * (n1 = 4, N1 = 4). Operands: a b | total a | left b | left 2 (N2 = 8; n2 = 5: a b total
# left 2). One decision (the if). Six lines of code: the docstring is not one.
STRAIGHT = '''def f(a, b):
    """Adds."""
    total = a + b
    left = total - a
    if left > b:
        return left * 2
    return left
'''

# Decisions: for, if, and, elif, while: cyclomatic 1 + 5. Ten lines, no blank or comment.
BRANCHY = '''def g(n):
    s = 0
    for i in range(n):
        if i > 3 and n > i:
            s += i
        elif i < 0:
            s -= 1
    while s > 100:
        s = s // 2
    return s
'''

# A TinyGSM solution as the model writes it: one function, no decisions, three operators.
TINYGSM = '''def simple_math_problem():
    """Lena buys 4 boxes of 6 pencils and gives 5 away. How many are left?"""
    boxes = 4
    per_box = 6
    given = 5

    # what is left
    return boxes * per_box - given
'''


def test_a_straight_program_by_hand() -> None:
    m = code_metrics(STRAIGHT)
    assert m is not None
    assert m.lines == 6 and m.cyclomatic == 2 and m.operations == 4
    assert m.halstead_difficulty == pytest.approx((4 / 2) * (8 / 5))
    assert m.halstead_volume == pytest.approx((4 + 8) * math.log2(4 + 5))
    assert m.difficulty == pytest.approx((2 + 3.2) / 2)


def test_every_decision_point_counts_once() -> None:
    m = code_metrics(BRANCHY)
    assert m is not None and m.cyclomatic == 6 and m.lines == 10


def test_blank_lines_comments_and_docstrings_are_not_lines_of_code() -> None:
    m = code_metrics(TINYGSM)
    assert m is not None and m.lines == 5 and m.cyclomatic == 1 and m.operations == 2  # * and -


@pytest.mark.parametrize("text", ['def f(:\n    return 1\n', "Here is the answer: 19.", '"""never closed',
                                  "  x = 1", "x = (1,\n"])
def test_what_does_not_parse_has_no_metrics(text: str) -> None:
    assert code_metrics(text) is None


def test_columns_are_null_where_there_is_no_code() -> None:
    cols = code_columns([STRAIGHT, None, "not code at all", TINYGSM])
    assert list(cols) == list(COLUMNS)
    assert cols["code_cyclomatic"] == [2, None, None, 1]
    assert cols["code_halstead_difficulty"][0] == 3.2 and cols["code_difficulty"][3] == pytest.approx(1.0)


def test_the_report_section_shows_the_spread_and_the_extremes() -> None:
    records = [{"id": f"r{i}", "code": src, **code_metrics(src).columns()}  # type: ignore[union-attr]
               for i, src in enumerate([TINYGSM, STRAIGHT, BRANCHY])]
    text = code_section(records + [{"id": "prose", "code_difficulty": None}], lambda r: f"<{r['id']}>")
    assert text is not None and "Static metrics of the 3 published programs" in text
    assert "| cyclomatic complexity | 1 | 1 | 2 | 6 | 6 |" in text  # over 1, 2, 6: the value at floor(p * n)
    assert text.index("**Easiest** (overall 1") < text.index("<r0>") < text.index("**Hardest**") < text.index("<r2>")
    assert code_section([{"id": "prose", "code_difficulty": None}], str) is None
