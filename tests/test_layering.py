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


KINDS = ("tinystories", "tinygsm", "evol")


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_imports_no_other_kind(kind: str) -> None:
    """What two kinds share lives in the library (math solving in ``pipeline.solving``), not in either kind."""
    others = {f"pipeline.{k}" for k in KINDS if k != kind}
    files = sorted((PIPELINE / kind).glob("*.py"))
    assert files
    offenders = [f"{f.relative_to(REPO)}:{line}: {module}" for f in files for line, module in imported_modules(f)
                 if ".".join(module.split(".")[:2]) in others]
    assert not offenders, f"pipeline.{kind} reaches into another kind:\n" + "\n".join(offenders)


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
