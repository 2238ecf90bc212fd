"""When two sampled programs are the same program: the vote counts programs, not samples.

A small model sampled k times at a low temperature often writes one program k
times, with other variable names, spacing or comments. Counting those as k
agreeing votes certifies a consistent mistake (Bansal et al. 2024, "Smaller,
Weaker, Yet Better", on false positives of agreement). Two samples are one
vote when their canonical forms are equal: parsed, comments and docstrings
dropped, local names renamed in order of first use, printed back.
"""

from __future__ import annotations

import ast
import builtins
import hashlib

_KEEP = set(dir(builtins))


class _Rename(ast.NodeTransformer):
    """Local names (variables, arguments, helper functions) become v0, v1, ... in order of first use;
    builtins, imported modules and attributes keep their names."""

    def __init__(self, keep: set[str]):
        self.keep = keep
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        if name in self.keep:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._name(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._name(node.name)
        node.returns = None
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:] or [ast.Pass()]  # a docstring is prose, not a step
        node.body = body
        self.generic_visit(node)
        return node


def canonical_program(source: str) -> str:
    """The program with names, spacing, comments, docstrings and annotations normalised away; a source
    that does not parse is its own canonical form (stripped)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source.strip()
    imported = {(a.asname or a.name).split(".")[0] for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    # the entry point keeps its name: every sample defines it, so it says nothing about the program
    tree = _Rename(_KEEP | imported | {"simple_math_problem"}).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def program_key(source: str | None) -> str | None:
    """A short id of the canonical program (None for a sample that wrote no function)."""
    if source is None:
        return None
    return hashlib.sha256(canonical_program(source).encode()).hexdigest()[:12]
