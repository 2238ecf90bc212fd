"""Who may import whom: the library never imports the flows, and a trainer's reader loads none of the writer.

* ``pipeline/`` is the library and ``flows/`` the Prefect layer over it
  (``flows.cli`` is the ``tinyforge`` command): nothing under ``pipeline/``
  imports ``flows``, at the top of a module or inside a function.
* A kind's package (``pipeline/tinygsm`` ...) imports no other kind's: what
  kinds share (math solving and verification) is its own module.
* A training job imports ``pipeline.loader`` (or ``pipeline.shards``) and
  gets the reader alone: pyarrow, fsspec, numpy, torch, the format in
  ``pipeline.shard_format``; not Prefect, pydantic, polars or the writer's
  modules (``pipeline.publish``, ``pipeline.recipe``).
"""

from __future__ import annotations

import ast
import json
import tomllib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PIPELINE = REPO / "pipeline"
READER = ["pipeline/loader.py", "pipeline/shards.py", "pipeline/shard_format.py"]
WRITER = {"pipeline.publish", "pipeline.recipe", "pipeline.stages", "pipeline.common_stages"}
HEAVY = {"prefect", "pydantic", "polars", "flows"}


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, wherever it stands, and of import_module("...") calls.

    ``package`` (default: the file's own under the repository) resolves relative imports.
    """
    found: list[tuple[int, str]] = []
    if package is None:
        package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None)
                   in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def top_package(module: str) -> str:
    return module.split(".")[0]


def test_nothing_under_pipeline_imports_flows() -> None:
    files = sorted(p for p in PIPELINE.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 20, files  # the scan sees the library, not an empty folder
    offenders = [f"{f.relative_to(REPO)}:{line}: {module}"
                 for f in files for line, module in imported_modules(f) if top_package(module) == "flows"]
    assert not offenders, "the library imports the flows layer:\n" + "\n".join(offenders)


def kind_packages() -> dict[str, str]:
    """Each installed kind's package (``pipeline.tinygsm``), by kind name, from tinyforge's own
    ``tinyforge.kinds`` entry points: the test names no kind either."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["tinyforge.kinds"]
    return {name: ".".join(target.split(":")[0].split(".")[:2]) for name, target in declared.items()}


KIND_PACKAGES = kind_packages()


@pytest.mark.parametrize("package", sorted(set(KIND_PACKAGES.values())))
def test_a_kind_imports_no_other_kind(package: str) -> None:
    """What two kinds share lives in the library (math solving in ``pipeline.solving``), not in either kind."""
    others = set(KIND_PACKAGES.values()) - {package}
    files = sorted((REPO / package.replace(".", "/")).glob("*.py"))
    assert files
    offenders = [f"{f.relative_to(REPO)}:{line}: {module}" for f in files for line, module in imported_modules(f)
                 if ".".join(module.split(".")[:2]) in others]
    assert not offenders, f"{package} reaches into another kind:\n" + "\n".join(offenders)


# --- the stage contract (issue 31) ------------------------------------------------------------------------


def pipeline_modules() -> dict[str, Path]:
    """Every module of the library by its dotted name (a package by its own name, for its __init__)."""
    found = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """``imported_modules`` less the imports under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    typing_only: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {line for stmt in node.body for line in range(stmt.lineno, stmt.end_lineno + 1)}
    return [(line, module) for line, module in imported_modules(path) if line not in typing_only]


def import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports, at the top or inside a function, a package's __init__
    included (``from pipeline.llm import X`` is an edge to ``pipeline.llm``)."""
    modules = pipeline_modules()

    def owner(module: str) -> str | None:  # pipeline.stages.base.Stage -> pipeline.stages.base
        while module and module not in modules:
            module = module.rpartition(".")[0]
        return module or None

    return {name: {m for _, imported in runtime_imports(path) if (m := owner(imported)) not in (None, name)}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_pipeline_modules() -> None:
    graph = import_graph()
    assert len(graph) > 80 and graph["pipeline.kinds"], graph  # the scan sees the library and its edges
    assert cycles(graph) == [], "modules that import each other, directly or round a loop"


def test_the_cycle_check_sees_a_loop_through_a_function_level_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_pipeline_module_is_over_600_lines() -> None:
    """One concept per module; the sandbox's worker (``_server.py``), one program run inside the jail,
    is the exception."""
    long = {name: n for name, path in pipeline_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {"pipeline.sandbox._server": long.get("pipeline.sandbox._server")}, long


def test_no_kind_is_named_outside_its_own_package() -> None:
    """Shared code knows no kind by name: what differs between kinds is declared on the kind (its text
    field, rubric, mix fields) or handed to the stage. Only the labeled sets of ``tinyforge judge-eval``
    (``pipeline/judge_eval.py``) still name the three kinds whose rubrics they test: issue 31's follow-up."""
    names = {name: package.replace(".", "/") + "/" for name, package in KIND_PACKAGES.items()}
    found = sorted((str(path.relative_to(REPO)), node.value)
                   for path in pipeline_modules().values()
                   for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                   if isinstance(node, ast.Constant) and node.value in names
                   and not str(path.relative_to(REPO)).startswith(names[node.value]))
    assert found == [("pipeline/judge_eval.py", "evol_instruct"), ("pipeline/judge_eval.py", "tinygsm"),
                     ("pipeline/judge_eval.py", "tinystories")], found


EDGES = {  # the library's entry points that may look a kind up by name, and why
    "pipeline.registry": "the registry itself",
    "pipeline.recipe": "parse_recipe: a recipe names its kind",
    "pipeline.kinds": "run_build: the build entry hands each stage its kind's context",
    "pipeline.judge_eval": "the judge-eval command: a labeled set is graded on its kind's rubric",
    "pipeline.mix.sources": "a mix reads datasets of any installed kind, by the kind their manifest names",
}


def test_a_kind_is_looked_up_only_at_the_edges() -> None:
    """Shared code is handed its kind (``KindContext``: the text field, the rubric, the schema); only the
    entry points find one by name. ``flows/`` (the command, the flow) is an edge too."""
    callers = {}
    for name, path in pipeline_modules().items():
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
                 == "get_kind"]
        if calls:
            callers[name] = calls
    assert set(callers) <= set(EDGES), {k: v for k, v in callers.items() if k not in EDGES}
    assert "pipeline.kinds" in callers  # the scan finds the calls


def test_shared_stages_and_machinery_import_no_kind_and_no_registry() -> None:
    """The stages every kind shares, the backends, difficulty, the batch runner, publishing and the report
    are given what they need of a kind; they import no kind's package, nor the registry."""
    kinds = set(KIND_PACKAGES.values())
    shared = [name for name in pipeline_modules() if name.startswith(("pipeline.stages", "pipeline.llm",
              "pipeline.difficulty")) or name in ("pipeline.batches", "pipeline.publish", "pipeline.report")]
    assert "pipeline.stages.dedup" in shared and "pipeline.llm.cache" in shared
    graph = import_graph()
    offenders = {name: sorted(m for m in graph[name] if ".".join(m.split(".")[:2]) in kinds
                              or m in ("pipeline.registry", "pipeline.kinds"))
                 for name in shared}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_finds_every_form_of_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import flows\nimport flows.cli as c\nfrom flows import FLOWS\nfrom .. import errors\n"
                     "def f():\n    from flows.runners import ENV\n    importlib.import_module('flows.serve')\n")
    found = [m for _, m in imported_modules(probe, package="pipeline.llm")]
    assert [m for m in found if top_package(m) == "flows"] == [
        "flows", "flows.cli", "flows", "flows.FLOWS", "flows.runners", "flows.runners.ENV", "flows.serve"]
    assert "pipeline.errors" in found


@pytest.mark.parametrize("path", READER)
def test_the_reader_imports_nothing_of_the_writer(path: str) -> None:
    """Statically, lazy imports included: the reader's modules name no writer module, Prefect or pydantic."""
    bad = [f"{path}:{line}: {module}" for line, module in imported_modules(REPO / path)
           if top_package(module) in {"prefect", "pydantic", "flows"}
           or any(module == w or module.startswith(w + ".") for w in WRITER)]
    assert not bad, "\n".join(bad)


def modules_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after ``statement``."""
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["pipeline.loader", "pipeline.shards", "pipeline.shard_format"])
def test_importing_the_reader_loads_no_orchestration_no_models_no_polars(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert module in loaded
    assert [m for m in loaded if top_package(m) in HEAVY] == []
    assert [m for m in loaded if m in WRITER] == []


def test_verifying_a_dataset_needs_no_torch() -> None:
    loaded = modules_after("import pipeline.shards")
    assert [m for m in loaded if top_package(m) == "torch"] == []
    # ...and the loader's names still come from pipeline.shards, lazily
    assert "torch" in modules_after("from pipeline.shards import ShardDataset")
