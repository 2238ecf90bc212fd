"""A corpus kind from outside tinyforge, built end to end.

The kind (short poems) lives in a distribution of its own,
``tests/fixtures/poems_kind`` (one module, a schema file and a
``tinyforge.kinds`` entry point). Nothing in tinyforge knows about it: the
recipe model, the schema, the generation, a filter, the shared dedup and
publish, the library entry point, the Prefect flow and `tinyforge check` all
find it through the registry: here by ``register``, and in a fresh process
after ``pip install`` through the entry point alone. The real embedded model
writes the poems; what the tests check holds for any text it samples (every
poem published or rejected with a reason, and each published one exactly the
completion the model returned).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import RecipeError
from pipeline.kinds import Kind, get_kind, register, run_build, unregister
from pipeline.recipe import load_recipe, parse_recipe
from pipeline.shards import read_split, verify_dataset
from pipeline.stages import BuildDir
from tests.conftest import TINYFORGE, write_recipe

DISTRIBUTION = Path(__file__).parent / "fixtures" / "poems_kind"
sys.path.insert(0, str(DISTRIBUTION))  # its source, for the tests in this process (not installed here)
from tinyforge_poems import KIND, TOPICS, PoemRecipe  # noqa: E402

sys.path.remove(str(DISTRIBUTION))


def _register() -> Kind[PoemRecipe]:
    return register(KIND)


@pytest.fixture(scope="module")
def poems() -> Iterator[Kind[PoemRecipe]]:
    yield _register()
    unregister("poems")  # the other tests' "unknown kind" is still unknown


def test_an_unregistered_kind_is_unknown_again() -> None:
    _register()
    unregister("poems")
    with pytest.raises(KeyError):
        get_kind("poems")
    with pytest.raises(RecipeError, match="unknown recipe kind 'poems'"):
        parse_recipe({"kind": "poems", "name": "x"})
    with pytest.raises(ValueError):
        unregister("tinygsm")


def _recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "poems.toml", f"""
        name = "poems"
        kind = "poems"
        seed = 5
        output_root = "{tmp_path / 'out'}"
        [generate]
        count = 4
        batch_size = 2
        [sampling]
        max_tokens = 40
        [backend]
        n_threads = 2
        [difficulty]
        enabled = false
        [publish]
        validation_fraction = 0.0
    """)


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_kind_defined_here_builds_end_to_end(poems: Kind[PoemRecipe], tmp_path: Path) -> None:
    assert get_kind("poems") is poems
    recipe = load_recipe(_recipe(tmp_path))  # the recipe loader found the model through the registry
    assert isinstance(recipe, PoemRecipe)

    outcome = run_build(recipe)
    assert [s.name for s in outcome.stages] == ["generate", "filter", "dedup"]
    assert outcome.usage["model_calls"] == 4

    ds = verify_dataset(outcome.published.path)
    assert ds.manifest["kind"] == "poems" and ds.manifest["schema"]["id"] == "poems.v1"
    rows = read_split(ds.path, "train")
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rows.height + rejected.height == 4  # each poem published, or rejected with a reason
    assert set(rejected["reason"]) <= {"too_short", "exact_duplicate", "near_duplicate"}
    generated = BuildDir(recipe.build_dir).read("generate")
    assert set(rows["poem"]) <= set(generated["poem"])  # exactly what the model wrote
    assert all(t in TOPICS for t in rows["topic"])

    again = run_build(recipe)
    assert again.reused and again.usage["model_calls"] == 0


@pytest.mark.slow
def test_the_prefect_flow_knows_a_registered_kind(poems: Kind[PoemRecipe], prefect_server: str,
                                                  tmp_path: Path) -> None:
    """Registered in this process, the kind has its flow here (a fresh process finds it installed: below)."""
    from flows.build import flow_for

    path = _recipe(tmp_path)
    result = flow_for("poems")(recipe_path=str(path))
    assert list(result["stages"]) == ["generate", "filter", "dedup", "publish"]


@pytest.mark.slow
def test_an_installed_distribution_adds_its_kind_to_a_fresh_process(prefect_server: str, tmp_path: Path) -> None:
    """`pip install` the poems distribution (into a folder of its own, on PYTHONPATH, so this venv is
    untouched); then `tinyforge build` in a fresh process finds the kind through its entry point alone, and
    builds it through the Prefect flow. Without the distribution the same recipe is an unknown kind."""
    path = _recipe(tmp_path)
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    unknown = subprocess.run([TINYFORGE, "check", str(path)], env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown recipe kind 'poems'" in unknown.stderr, unknown.stderr

    source, site = shutil.copytree(DISTRIBUTION, tmp_path / "src"), tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--target", str(site), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert (site / "tinyforge_poems" / "poems.v1.json").is_file()  # its schema travels with it

    env["PYTHONPATH"] = str(site)
    build = subprocess.run([TINYFORGE, "build", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    ds = verify_dataset(tmp_path / "out" / "poems" / "dataset")
    assert ds.manifest["kind"] == "poems" and ds.manifest["schema"]["id"] == "poems.v1"
    rows, rejected = read_split(ds.path, "train"), pl.read_parquet(ds.path / "rejected.parquet")
    assert rows.height + rejected.height == 4 and set(rows["topic"]) <= set(TOPICS)


def test_a_judge_for_a_kind_without_a_rubric_is_a_recipe_error(poems: Kind[PoemRecipe], tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    path.write_text(path.read_text() + "\n[judge]\nenabled = true\n")
    with pytest.raises(RecipeError, match="judge: the poems kind has no judge rubric"):
        load_recipe(path)
