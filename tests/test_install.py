"""A regular (non-editable) install of this checkout works from any folder.

The checkout's files (what git tracks or would track) are copied to a temporary folder, so building
leaves nothing in the repository (setuptools writes build/ and *.egg-info beside the sources, and
build/ here is the builds' output root). From the copy, ``pip wheel --no-deps --no-build-isolation``
makes a wheel, which is installed with ``--no-deps`` into a fresh venv. That venv reaches the
dependencies already installed in this one through a ``.pth`` file naming this venv's
site-packages: ``site`` puts a ``.pth`` line's folder on ``sys.path`` without reading that folder's
own ``.pth`` files, so the editable install's finder (``__editable__.tinyforge-*.pth``) is never
loaded, and the tests assert that. Everything then runs from a temporary working folder outside the
repository.

Checked: ``tinyforge check`` on every shipped recipe, and the vocabulary, the schemas, the math seeds
and the seed instructions loaded through the public functions that use them, all from the
installed package. Not a build: even a few stories mean loading the embedded model and generating on
this machine's shared CPU, which is what the e2e tests do; a recipe's files resolving (``check``)
and the shipped files loading are what the install changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
ENV.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")


def run(cmd: list[str | Path], cwd: Path) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def shipped_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@dataclass(frozen=True)
class Install:
    source: Path  # the copy of the checkout
    python: Path  # the fresh venv's interpreter
    bin: Path
    site: Path  # the fresh venv's site-packages
    work: Path  # a working folder outside the repository


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    dest = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed):
        if (REPO / name).is_file():  # not a file deleted in the working tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def install(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    top = tmp_path_factory.mktemp("install")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", ".",
         "-w", top / "dist"], cwd=source)
    (wheel,) = (top / "dist").glob("tinyforge-*.whl")
    # A venv with nothing in it; this venv's pip installs into it (--python runs pip under its interpreter,
    # so the console script points at the new venv).
    run([sys.executable, "-m", "venv", "--without-pip", top / "venv"], cwd=top)
    python = top / "venv" / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=top).strip())
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], cwd=top)
    (site / "tinyforge_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    (top / "work").mkdir()
    return Install(source, python, top / "venv" / "bin", site, top / "work")


PROBE = """
import json, sys
import flows, pipeline
from pipeline import paths
from pipeline.evol.eliminate import stop_words
from pipeline.evol.seeds import load_seed_pool
from pipeline.revision import code_revision
from pipeline.schema import load_schema, schema_ids
from pipeline.solving import shipped_example
from pipeline.tinystories.vocab import load_vocabulary

schemas = schema_ids()
print(json.dumps({
    "modules": sorted({m.__file__ for name, m in sys.modules.items()
                       if name.split(".")[0] in ("pipeline", "flows") and getattr(m, "__file__", None)}),
    "editable_finders": [name for name in sys.modules if "__editable__" in name]
                        + [repr(f) for f in sys.meta_path if "__editable__" in repr(f)],
    "paths": {k: str(getattr(paths, k)) for k in ("DATA_DIR", "SCHEMAS_DIR", "VOCAB_DIR", "RECIPES_DIR",
                                                   "SEEDS_FILE", "INSTRUCTIONS_FILE")},
    "repo_root": paths.REPO_ROOT and str(paths.REPO_ROOT),
    "vocabulary": len(load_vocabulary(paths.VOCAB_DIR)),
    "schemas": {s: [str(load_schema(s).path), len(load_schema(s).arrow)] for s in schemas},
    "seed_example": shipped_example().question,
    "instructions": len(load_seed_pool(paths.INSTRUCTIONS_FILE).seeds),
    "stop_words": len(stop_words()),
    "code": code_revision(),
}))
"""


def test_installed_package_reads_its_own_data_and_schemas(install: Install) -> None:
    out = json.loads(run([install.python, "-c", PROBE], cwd=install.work))
    assert not out["editable_finders"]
    assert out["modules"] and all(Path(f).is_relative_to(install.site) for f in out["modules"]), out["modules"]
    assert all(Path(p).is_relative_to(install.site / "pipeline" / "_shipped") for k, p in out["paths"].items()
               if k != "RECIPES_DIR"), out["paths"]
    assert Path(out["paths"]["RECIPES_DIR"]) == install.site / "flows" / "recipes"
    assert out["repo_root"] is None and out["code"]["git_commit"] is None  # no checkout to ask git about
    # every shipped file came along, and nothing else
    assert shipped_files(Path(out["paths"]["DATA_DIR"])) == shipped_files(REPO / "data")
    assert shipped_files(Path(out["paths"]["SCHEMAS_DIR"])) == shipped_files(REPO / "schemas")
    assert shipped_files(Path(out["paths"]["RECIPES_DIR"])) == shipped_files(REPO / "flows" / "recipes")
    # and loads through the functions that use it
    assert 1400 <= out["vocabulary"] <= 1600
    assert set(out["schemas"]) == {p.stem for p in (REPO / "schemas").glob("*.json")} - {"record.v1", "code.v1"}
    assert all(Path(path).is_relative_to(install.site) and n > 0 for path, n in out["schemas"].values())
    assert out["seed_example"] and out["instructions"] > 0 and out["stop_words"] > 50


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "flows" / "recipes").glob("*.toml")))
def test_installed_tinyforge_checks_a_shipped_recipe_from_another_folder(install: Install, recipe: str) -> None:
    path = install.site / "flows" / "recipes" / recipe
    if recipe == "mix-demo.toml":  # it mixes the other demos' datasets: until they are built, one clear line
        proc = subprocess.run([str(install.bin / "tinyforge"), "check", str(path)], cwd=install.work, env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "sources.0.path: no published dataset at" in proc.stderr and "(no manifest.json)" in proc.stderr
        return
    out = run([install.bin / "tinyforge", "check", path], cwd=install.work)
    assert out.startswith(f"{path}: ok (")


def test_sdist_carries_the_shipped_folders(source: Path, tmp_path: Path) -> None:
    """The sdist has data/ and schemas/ at its top (setup.py lists them), so its wheel can carry them."""
    run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"],
        cwd=source)
    (sdist,) = tmp_path.glob("tinyforge-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for folder in ("data", "schemas", "flows/recipes"):
        assert {f"{folder}/{f}" for f in shipped_files(REPO / folder)} <= names, folder
    assert "setup.py" in names
