"""Each demo recipe, made small, builds the rows it built before, from the same completions.

The fixtures (tests/golden.py) were captured with the per-kind flows that the
kind registry replaced; these builds run the library entry point and the one
generic Prefect flow over the same response cache. No model call is made, so
the rows depend only on tinyforge's code.

The tinygsm and evol_instruct rows were rewritten once since, from the same
completions, when verification began recording votes as distinct programs
(``answer_votes``, each sample's ``program``; the new verify settings change
the build id): nothing else in them moved. They were rewritten again, with
``python -m tests.golden rows``, when the code metrics columns (``code_*``)
were added (only those columns came in), and when the ``[prospect]`` section
was added to their recipes (its null columns came in, and the build id, a
hash of the recipe, moved).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.golden import (FIXTURES, IDENTITIES, SMALL, build_ids, canonical, load_completions, published_rows,
                          read_jsonl, small_recipe, stage_fingerprints)

TEXT_FIELD = {"tinystories": "story", "tinygsm": "question", "evol_instruct": "instruction"}


def _golden(kind: str) -> list[str]:
    return canonical(read_jsonl(FIXTURES / f"{kind}.rows.jsonl"))


@pytest.mark.slow  # the demo recipes score fluency and IFD with the embedded model
@pytest.mark.parametrize("kind", list(SMALL))
def test_the_library_entry_point_publishes_the_golden_rows(kind: str, tmp_path: Path) -> None:
    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe

    recipe = load_recipe(small_recipe(kind, tmp_path))
    assert load_completions(kind, tmp_path / "out") > 0
    outcome = run_build(recipe)
    assert outcome.usage["model_calls"] == 0  # everything came from the captured completions
    assert canonical(published_rows(outcome.published.path)) == _golden(kind)
    assert stage_fingerprints(outcome) == json.loads(IDENTITIES.read_text())["stage_fingerprints"][kind]
    check_by_oracles(kind, outcome.published.path, recipe)
    assert not outcome.reused and all(not s.skipped for s in outcome.stages)

    again = run_build(recipe)  # a second run reuses every stage and the published dataset
    assert again.reused and all(s.skipped for s in again.stages)


def test_every_shipped_recipe_keeps_its_build_id() -> None:
    """The build id is the hash of what a recipe asks for: a refactor of how recipes are read or composed
    (issue 31) must leave every one as it was (`python -m tests.golden identities` records them)."""
    assert build_ids() == json.loads(IDENTITIES.read_text())["build_ids"]


@pytest.mark.slow
def test_the_prefect_flow_publishes_the_same_rows(prefect_server: str, tmp_path: Path) -> None:
    from flows.build import flow_for
    from pipeline.recipe import load_recipe

    kind = "tinygsm"  # batches, the sandbox and decontamination: the most steps of the three
    load_completions(kind, tmp_path / "out")
    path = small_recipe(kind, tmp_path)
    result = flow_for(kind)(recipe_path=str(path))
    assert result["run_usage"]["model_calls"] == 0
    assert canonical(published_rows(Path(result["dataset"]))) == _golden(kind)
    check_by_oracles(kind, Path(result["dataset"]), load_recipe(path))
    assert list(result["stages"]) == ["generate", "verify", "decontaminate", "fluency", "dedup", "judge", "score", "prospect", "publish"]


# Oracles: what a published dataset must satisfy, worked out here from the published rows alone, with no
# fixture and none of the code that made them. They cover what the fixtures cannot pin across CPUs.

def _content_id(text: str) -> str:
    """The documented record id (docs/shards.md): sha256 of the text with case, punctuation and spacing
    folded away, 16 hex digits. Written out here, not imported, so a change to the id is seen."""
    folded = " ".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower()))
    return hashlib.sha256(folded.encode()).hexdigest()[:16]


def _run_solution(code: str) -> object:
    """A published solution run in a fresh interpreter of its own (not the sandbox under test)."""
    name = re.search(r"^def (\w+)\(", code, re.M).group(1)
    done = subprocess.run([sys.executable, "-I", "-c", code + f"\nimport json\nprint(json.dumps({name}()))"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-1000:]
    return json.loads(done.stdout)


def check_by_oracles(kind: str, dataset: Path, recipe: Any) -> None:
    import polars as pl

    from pipeline.shards import read_split, verify_dataset

    manifest = verify_dataset(dataset).manifest
    splits = manifest["splits"]
    records = pl.concat([read_split(dataset, s) for s, meta in splits.items()
                         if not meta.get("config") and not meta.get("subset_of")], how="vertical")
    assert records.height > 0
    for r in records.iter_rows(named=True):
        assert r["id"] == _content_id(r[TEXT_FIELD[kind]])
        assert r["build_id"] == manifest["build_id"]
    if kind == "tinygsm":  # every published answer is what its program returns when run again
        for r in records.iter_rows(named=True):
            value = _run_solution(r["code"])
            assert isinstance(value, (int, float)) and math.isclose(value, r["answer"], rel_tol=1e-9, abs_tol=1e-9)
    if kind == "tinystories":  # every published story passes the filter; every filtered-out one fails it again
        from pipeline.tinystories.filters import check_story
        from pipeline.tinystories.vocab import load_vocabulary

        vocab = load_vocabulary(recipe.generate.vocab_dir)
        assert all(check_story(r, vocab, recipe.filter) is None for r in records.iter_rows(named=True))
        rejected = pl.read_parquet(dataset / "rejected.parquet").filter(pl.col("stage") == "filter")
        assert rejected.height > 0
        for r in rejected.iter_rows(named=True):
            assert check_story(json.loads(r["record_json"]), vocab, recipe.filter)[0] == r["reason"]

    # S2L: the subset is the train rows the scores selected, whole; as many records are selected as the
    # budget share of the scored records; clusters' sizes add up to the records.
    summary = manifest["difficulty"]
    assert splits["s2l"]["subset_of"] == "train" and splits["s2l"]["selected_by"] == "s2l_selected"
    train = read_split(dataset, "train")
    assert canonical(read_split(dataset, "s2l").sort("id").to_dicts()) == \
        canonical(train.filter(pl.col("s2l_selected")).sort("id").to_dicts())
    assert summary["records"] == records.height  # every scored record was published
    assert records["s2l_selected"].sum() == summary["s2l_selected"] == max(1, round(0.5 * records.height))
    sizes = records["s2l_cluster"].value_counts()
    assert sizes["count"].sum() == records.height and sizes["s2l_cluster"].max() < len(summary["clusters"])
