"""A corpus kind defined entirely in this module, registered, and built end to end.

Nothing outside this file knows about it: the recipe model, the schema, the
generation, a filter, the shared dedup and publish, the library entry point,
the Prefect flow and `tinyforge check` all find it through the registry. The
real embedded model writes the poems; what the test checks holds for any
text it samples (every poem published or rejected with a reason, and each
published one exactly the completion the model returned).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest
from pydantic import Field

from pipeline.batches import Models
from pipeline.common_stages import dedup, publish_stage, record_stage
from pipeline.fingerprint import declared_fingerprint
from pipeline.errors import RecipeError
from pipeline.kinds import BatchedGeneration, Kind, Stage, get_kind, register, run_build, unregister
from pipeline.llm import sampling_params
from pipeline.llm.types import ChatRequest, Message, derive_seed
from pipeline.config import Section
from pipeline.recipe import BaseRecipe, load_recipe, parse_recipe
from pipeline.records import make_id, rejection
from pipeline.shards import read_split, verify_dataset
from pipeline.stages import BuildDir, StageResult
from pipeline.text import words
from tests.conftest import REPO, write_recipe

TOPICS = ("the sea", "a cat", "rain", "the moon", "bread", "a kite")
PROMPT = "Write a short poem about {topic}."

# --- the kind ------------------------------------------------------------------------------------


class PoemGenerate(Section):
    count: int = Field(4, ge=1)
    batch_size: int = Field(2, ge=1)


class PoemFilter(Section):
    min_words: int = 1


class PoemRecipe(BaseRecipe):
    kind: Literal["poems"] = "poems"
    generate: PoemGenerate = PoemGenerate()
    filter: PoemFilter = PoemFilter()


READS = {"generate": ("seed", "generate", "sampling", "backend"), "filter": ("filter",)}


def _fingerprint(recipe: PoemRecipe) -> str:
    return declared_fingerprint(recipe, "generate", 1, READS["generate"])


def _work(recipe: PoemRecipe, start: int, stop: int, models: Models) -> tuple[list[dict[str, Any]], list]:
    backend = models.open(recipe.backend)
    params = sampling_params(recipe.sampling)
    requests = [ChatRequest((Message("user", PROMPT.format(topic=TOPICS[i % len(TOPICS)])),), params,
                            seed=derive_seed(recipe.seed, i)) for i in range(start, stop)]
    records = []
    for i, (completion,) in zip(range(start, stop), backend.generate(requests), strict=True):
        poem = completion.text.strip()
        records.append({"id": make_id(poem or str(i)), "poem": poem, "topic": TOPICS[i % len(TOPICS)],
                        "generator_model": backend.model_id, "num_tokens": completion.completion_tokens})
    return records, []


def _filter(recipe: PoemRecipe, upstream: StageResult) -> StageResult:
    def run(records: list[dict[str, Any]]) -> tuple[list, list, dict]:
        short = [r for r in records if len(words(r["poem"])) < recipe.filter.min_words]
        return ([r for r in records if r not in short],
                [rejection(r, "filter", "too_short", f"{len(words(r['poem']))} words", "poem") for r in short], {})

    return record_stage(recipe, "filter", upstream, version=1, reads=READS["filter"], run=run)


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "x-schema-name": "poems", "x-schema-version": 1,
    "type": "object", "additionalProperties": False,
    "required": ["id", "build_id", "poem", "topic", "generator_model", "dedup_cluster", "num_words"],
    "properties": {"id": {"type": "string"}, "build_id": {"type": "string"}, "poem": {"type": "string"},
                   "topic": {"type": "string"}, "generator_model": {"type": "string"},
                   "dedup_cluster": {"type": "string"}, "num_words": {"type": "integer"}},
}


def _publish(recipe: PoemRecipe, stages: list[StageResult]):
    def to_record(r: dict[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "build_id": recipe.build_id, "poem": r["poem"], "topic": r["topic"],
                "generator_model": r["generator_model"], "dedup_cluster": r["dedup_cluster"],
                "num_words": len(words(r["poem"]))}

    return publish_stage(recipe, stages, to_record=to_record,
                         templates={"poems.prompt@1": PROMPT},
                         format_example=lambda r: f"> {r['poem']}", length=lambda r: r["num_words"],
                         default_description="Short poems.", training_text=lambda r: r["poem"])


def _schema_file() -> Path:
    # a kind's schema is a file; this one is written from the dict above, so the kind stays in this module
    path = Path(tempfile.gettempdir()) / f"tinyforge-test-poems-{os.getpid()}.v1.json"
    path.write_text(json.dumps(SCHEMA))
    return path


def _register() -> Kind[PoemRecipe]:
    return register(Kind(
        name="poems", recipe=PoemRecipe, flow_name="poems", schema_id=_schema_file(), text_field="poem",
        produce=BatchedGeneration(_fingerprint, _work), stages=(Stage("filter", _filter, READS["filter"]), dedup()),
        produce_reads={"generate": READS["generate"]}, publish=_publish, description="short poems"))


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
def test_the_flow_and_the_cli_know_the_kind(poems: Kind[PoemRecipe], prefect_server: str, tmp_path: Path) -> None:
    from flows.build import flow_for

    path = _recipe(tmp_path)
    result = flow_for("poems")(recipe_path=str(path))
    assert list(result["stages"]) == ["generate", "filter", "dedup", "publish"]

    # A separate process knows only the built-in kinds: the kind lives in this module.
    check = subprocess.run([sys.executable, "-c", "import tests.test_custom_kind as t, sys\nt._register()\n"
                            "from flows.cli import main\nsys.exit(main(['check', sys.argv[1]]))", str(path)],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "ok (poems" in check.stdout


def test_a_judge_for_a_kind_without_a_rubric_is_a_recipe_error(poems: Kind[PoemRecipe], tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    path.write_text(path.read_text() + "\n[judge]\nenabled = true\n")
    with pytest.raises(RecipeError, match="judge: the poems kind has no judge rubric"):
        load_recipe(path)
