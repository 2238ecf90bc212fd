"""A target row count: rounds of candidates until exactly N records are published, or the budget ends."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.target import Budget, next_count, select, sentence
from tests.conftest import write_recipe


def test_the_next_round_asks_for_the_remainder_over_the_yield_plus_a_margin() -> None:
    b = Budget(target=10, max_candidates=1000, batch_size=8)
    assert next_count(40, 10, b) is None  # met
    assert next_count(40, 5, b) == 40 + 50  # 5 missing at 8 candidates each, x1.25
    assert next_count(40, 9, b) == 48  # at least a batch
    assert next_count(40, 0, b) == 40 + 1000 - 40  # nothing survived: 4x as many per missing record, capped
    assert next_count(1000, 3, b) is None  # the budget is spent
    assert next_count(990, 9, b) == 1000  # the last round stops at the budget


def test_selection_keeps_candidate_order_and_the_sentence_is_plain() -> None:
    kept, rest = select([{"i": i} for i in range(5)], 3)
    assert [r["i"] for r in kept] == [0, 1, 2] and [r["i"] for r in rest] == [3, 4]
    assert sentence(3, 3, 8, 2, 50).startswith("Target met: 3 records from 8 candidates in 2 rounds")
    assert "budget of 4 candidates ran out with 2 of the 5" in sentence(2, 5, 4, 2, 4)


def _recipe(tmp_path: Path, target: int, max_candidates: int) -> Path:
    from tests.replay import preload_stories

    recipe = write_recipe(tmp_path / "target.toml", f"""
        name = "target"
        kind = "tinystories"
        seed = 3
        output_root = "{tmp_path / 'out'}"

        [generate]
        count = 2
        batch_size = 2
        target = {target}
        max_candidates = {max_candidates}

        [filter]
        min_words = 5
        min_required_words = 0
        max_oov_fraction = 1.0

        [difficulty]
        enabled = false

        [publish]
        validation_fraction = 0.25
        """)
    preload_stories(recipe, range(8))  # every candidate is a hand-written story that passes the filter
    return recipe


@pytest.mark.slow
def test_a_target_publishes_exactly_n_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe
    from pipeline.shards import read_split, verify_dataset

    outcome = run_build(load_recipe(_recipe(tmp_path, target=3, max_candidates=8)))
    ds = verify_dataset(outcome.published.path)
    assert sum(ds.manifest["splits"][s]["rows"] for s in ds.splits) == 3  # train + validation
    stages = {s["name"]: s for s in ds.manifest["stages"]}
    # round 1: 2 candidates, 2 survive; round 2 asks for 2 more (1 missing, at least a batch): 4 survive
    assert stages["generate"]["stats"]["in"] == 4 and stages["target"]["rows"]["records"] == 3
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rejected.filter(pl.col("reason") == "beyond_target").height == 1
    assert outcome.usage["model_calls"] == 0  # every candidate came from the cache, in both rounds
    assert any("Target met: 3 records from 4 candidates in 2 rounds" in n for n in ds.manifest["notes"])
    ids = [r["id"] for s in ds.splits for r in read_split(ds.path, s).iter_rows(named=True)]
    assert len(set(ids)) == 3
    assert "Target met" in capsys.readouterr().out


@pytest.mark.slow
def test_a_spent_budget_publishes_what_it_got_and_says_so(tmp_path: Path) -> None:
    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe
    from pipeline.shards import verify_dataset

    outcome = run_build(load_recipe(_recipe(tmp_path, target=10, max_candidates=4)))
    ds = verify_dataset(outcome.published.path)
    assert sum(ds.manifest["splits"][s]["rows"] for s in ds.splits) == 4
    assert any("budget of 4 candidates ran out with 4 of the 10" in n for n in ds.manifest["notes"])
    assert "Target not met" in (ds.path / "README.md").read_text()
