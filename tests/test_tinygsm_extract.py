"""Extraction from real SmolLM2-135M outputs (captured from this project's runs)."""

from __future__ import annotations

import ast

from pipeline.solving.extract import extract_function, normalize_solution, program
from pipeline.tinygsm.extract import extract_question

FENCED_WITH_PROSE = '''Here's a Python function that uses a loop to calculate the total change:
```python
def simple_math_problem():
    total_change = 0
    for box in range(4):
        total_change += (box * 9) + 2
    return total_change

# Example usage:
print(simple_math_problem())
```
However, this will only calculate the change when the boxes are stacked.'''

UNFENCED = '''Sure! Here it is.

import math
def simple_math_problem() -> float:
    """Old docstring."""
    apples = 12
    eaten = 5
    result = math.floor(apples - eaten)
    return result

This function subtracts the eaten apples.'''

WITH_ARGS = '''```python
def simple_math_problem(n):
    return (2 * n) + 3.0
print(simple_math_problem())
```'''

BROKEN = '''```python
def simple_math_problem():
    print("The answer is:", 10 + (2*3.5)
```'''

NO_FUNCTION = "The answer is 3/9.\n\nWe can solve this problem using a simple and efficient approach."


def test_fenced_code_with_prose_around_it() -> None:
    src = extract_function(FENCED_WITH_PROSE)
    assert src is not None and src.startswith("def simple_math_problem():")
    assert "However" not in src


def test_unfenced_code_keeps_its_imports_and_drops_prose() -> None:
    src = extract_function(UNFENCED)
    assert src is not None and src.startswith("import math\ndef simple_math_problem()")
    assert "This function" not in src and "Sure" not in src


def test_no_function_or_broken_code_gives_none() -> None:
    assert extract_function(NO_FUNCTION) is None
    assert extract_function(BROKEN) is None


def test_normalize_puts_the_question_in_the_docstring_and_drops_top_level_code() -> None:
    question = 'Ann has 12 "big" apples and eats 5. How many are left?'
    code = normalize_solution(extract_function(FENCED_WITH_PROSE), question, "int")
    tree = ast.parse(code)
    (func,) = tree.body
    assert func.name == "simple_math_problem" and ast.get_docstring(func) == question
    assert ast.unparse(func.returns) == "int"
    assert "print(" not in code  # the example call at top level is gone
    assert code.startswith("def simple_math_problem() -> int:")
    scope: dict = {}
    exec(program(code), scope)
    assert scope["result"] == 2 + 11 + 20 + 29


def test_normalize_replaces_an_old_docstring() -> None:
    code = normalize_solution(extract_function(UNFENCED), "How many apples?", "float")
    assert "Old docstring" not in code and '"""How many apples?"""' in code
    assert code.startswith("import math\n")


def test_functions_that_need_arguments_are_refused() -> None:
    assert normalize_solution(extract_function(WITH_ARGS), "q?") is None


def test_extract_question_cuts_labels_and_trailing_work() -> None:
    raw = ("New problem: Grace opened her piggy bank and found 24 quarters and 35 dimes. "
           "How many dollars does Grace have? The answer is: 24 * 0.25 + 35 * 0.1 = 9.5")
    assert extract_question(raw) == ("Grace opened her piggy bank and found 24 quarters and 35 dimes. "
                                     "How many dollars does Grace have?")
    assert extract_question("**Problem 1:** Sam has 3 cats. How many legs?") == "Sam has 3 cats. How many legs?"
    assert extract_question("  \"Tom buys 3 pens.\"  ") == "Tom buys 3 pens."
