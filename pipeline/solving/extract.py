"""Pull a solution function out of free-form chat output, and shape it for publishing.

Small models wrap code in fences or not, add prose before and after, print
example calls, and define helpers. ``extract_function`` finds the
``simple_math_problem`` definition wherever it is; ``normalize_solution``
rewrites it into the TinyGSM shape: module imports, then the function, with
the problem as its docstring and no other top-level code.
"""

from __future__ import annotations

import ast
import re
import textwrap

FUNCTION = "simple_math_problem"
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def _candidates(text: str) -> list[str]:
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    return [*blocks, text]


def _function_lines(source: str) -> str | None:
    """The def block (and the imports above it) by indentation, for text that is not all code."""
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(rf"\s*def\s+{FUNCTION}\s*\(", line)), None)
    if start is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = [lines[start]]
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    imports = [line for line in lines[:start] if re.match(r"\s*(?:import\s+\w|from\s+\w[\w.]*\s+import\s)", line)
               and len(line) - len(line.lstrip()) == indent]
    return textwrap.dedent("\n".join(imports + body)).strip() + "\n"


def extract_function(text: str) -> str | None:
    """Source of the ``simple_math_problem`` definition, or None when there is none that parses."""
    for candidate in _candidates(text):
        if f"def {FUNCTION}" not in candidate:
            continue
        for source in (textwrap.dedent(candidate), _function_lines(candidate)):
            if source is None:
                continue
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            if any(isinstance(n, ast.FunctionDef) and n.name == FUNCTION for n in tree.body):
                return source
    return None


def normalize_solution(source: str, question: str, returns: str = "float") -> str | None:
    """Imports + the function alone, the question as its docstring. None if it cannot be called bare."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == FUNCTION), None)
    if func is None:
        return None
    a = func.args
    required = len(a.posonlyargs) + len(a.args) - len(a.defaults) + sum(d is None for d in a.kw_defaults)
    if required > 0:
        return None
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    func.body = [ast.Expr(ast.Constant(question)), *(body or [ast.Pass()])]
    func.returns = ast.Name(returns)
    func.decorator_list = []
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    module = ast.Module(body=[*imports, func], type_ignores=[])
    return ast.unparse(ast.fix_missing_locations(module)) + "\n"


def program(solution: str) -> str:
    """What the sandbox runs: the solution, then its call into ``result``."""
    return f"{solution}\nresult = {FUNCTION}()\n"
