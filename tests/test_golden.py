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

from pathlib import Path

import pytest

from tests.golden import FIXTURES, SMALL, canonical, load_completions, published_rows, read_jsonl, small_recipe


def _golden(kind: str) -> list[str]:
    return canonical(read_jsonl(FIXTURES / f"{kind}.rows.jsonl"))


@pytest.mark.parametrize("kind", list(SMALL))
def test_the_library_entry_point_publishes_the_golden_rows(kind: str, tmp_path: Path) -> None:
    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe

    recipe = load_recipe(small_recipe(kind, tmp_path))
    assert load_completions(kind, tmp_path / "out") > 0
    outcome = run_build(recipe)
    assert outcome.usage["model_calls"] == 0  # everything came from the captured completions
    assert canonical(published_rows(outcome.published.path)) == _golden(kind)
    assert not outcome.reused and all(not s.skipped for s in outcome.stages)

    again = run_build(recipe)  # a second run reuses every stage and the published dataset
    assert again.reused and all(s.skipped for s in again.stages)


def test_the_prefect_flow_publishes_the_same_rows(prefect_server: str, tmp_path: Path) -> None:
    from flows.build import flow_for

    kind = "tinygsm"  # batches, the sandbox and decontamination: the most steps of the three
    load_completions(kind, tmp_path / "out")
    result = flow_for(kind)(recipe_path=str(small_recipe(kind, tmp_path)))
    assert result["run_usage"]["model_calls"] == 0
    assert canonical(published_rows(Path(result["dataset"]))) == _golden(kind)
    assert list(result["stages"]) == ["generate", "verify", "decontaminate", "fluency", "dedup", "judge", "score", "prospect", "publish"]
