"""A target for Evol-Instruct builds: more seeds each round of the build until exactly N evolved
instructions survive, or the budget (or the seed pool) runs out, and the card says which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.kinds import InProcess, run_build
from pipeline.recipe import load_recipe
from pipeline.shards import read_split, verify_dataset
from tests.conftest import write_recipe
from tests.replay import preload_evolution

pytestmark = pytest.mark.slow

# Six seeds, and for each an evolution and a response that pass every elimination rule: every request the
# builds below send is answered from the response cache, so what survives does not depend on this CPU.
SEEDS = [
    ("Name three animals that live on a farm.",
     "Name three animals that live on a farm, and say what each one gives the farmer.",
     "A cow gives milk and eats grass. A hen gives eggs and eats grain. A sheep gives wool and eats hay."),
    ("Describe how to make a cup of tea.",
     "Describe how to make a cup of green tea, saying how hot the water should be.",
     "Heat water to about 80 degrees. Put two spoons of leaves in a pot, pour the water, wait three minutes."),
    ("Explain why leaves change color in the fall.",
     "Explain why maple leaves turn red in the fall, in words a child understands.",
     "In fall the green chlorophyll breaks down. Birch leaves show the yellow that was always there."),
    ("Write a short poem about the sea.",
     "Write a short poem of four rhyming lines about the sea at night.",
     "The lamp goes round, the waves are black, a ship is sailing far, the child looks out and waves it back."),
    ("List some ways to save water at home.",
     "List five ways a family can save water at home, and say which saves the most.",
     "Shorter showers save 100 liters. Fixing a drip saves 50. A full dishwasher saves 40."),
    ("Give advice for a first day at a new school.",
     "Give three pieces of advice for a shy child on a first day at a new school.",
     "Say hello to one person. Ask the teacher where things are. Find a friend at lunch by sharing a game."),
]


def _recipe(tmp_path: Path, target: int, max_seeds: int | None = None) -> Path:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"id": f"s{i}", "instruction": q}) + "\n" for i, (q, _, _) in
                             enumerate(SEEDS)))
    budget = f"max_seeds = {max_seeds}\n" if max_seeds else ""
    return write_recipe(tmp_path / "evol.toml", f"""
        name = "evol-target"
        kind = "evol_instruct"
        seed = 5
        output_root = "{tmp_path / 'out'}"
        [seeds]
        path = "{seeds}"
        limit = 2
        [evolve]
        rounds = 1
        batch_size = 2
        exemplars = 0
        operations = ["add_constraints"]
        target = {target}
        {budget}
        [response]
        allow_truncated = true
        [difficulty]
        enabled = false
        [fluency]
        enabled = false
        [calibrate]
        enabled = false
        [publish]
        validation_fraction = 0.0
    """)


def _preload(recipe: Path) -> None:
    for i, (question, evolution, response) in enumerate(SEEDS):
        preload_evolution(recipe, {"id": f"s{i}", "instruction": question}, 1, evolution, response)


def _build(recipe: Path):
    lines: list[str] = []
    outcome = run_build(load_recipe(recipe), InProcess(echo=lines.append))
    return outcome, verify_dataset(outcome.published.path), lines


def test_an_evolution_target_grows_the_seeds_until_it_is_met_and_continues_when_raised(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, target=3)
    _preload(recipe)
    outcome, ds, lines = _build(recipe)
    rows = read_split(ds.path, "train")
    # round 1 of the build: 2 seeds, 2 survivors; then 2 + ceil(1 x 1.25) -> 4 seeds, 4 survivors
    assert rows.height == 3 and sorted(rows["root_id"]) == ["s0", "s1", "s2"]  # the first 3 in seed order
    assert outcome.usage["model_calls"] == 0
    assert "target: round 1: 2 of 3 records from 2 candidates; next round: 4 candidates in all" in lines
    assert "Target met: 3 records from 4 candidates in 2 rounds." in ds.manifest["notes"]
    target = next(s for s in ds.manifest["stages"] if s["name"] == "target")
    assert target["stats"]["rejected_by_reason"] == {"beyond_target": 1}

    # raised: the same evolutions, from the cache, and two more
    raised = _recipe(tmp_path, target=5)
    outcome, ds, _ = _build(raised)
    assert outcome.usage["model_calls"] == 0
    assert sorted(read_split(ds.path, "train")["root_id"]) == ["s0", "s1", "s2", "s3", "s4"]


def test_an_evolution_target_stops_when_the_seed_pool_or_the_budget_runs_out(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, target=9)
    _preload(recipe)
    _, ds, _ = _build(recipe)  # 6 seeds in the file: the pool runs out before the default budget
    assert read_split(ds.path, "train").height == 6
    assert "Target not met: the input ran out at 6 candidates with 6 of the 9 records asked for (2 rounds); add " \
        "candidates to the input to continue from here." in ds.manifest["notes"]

    budget = _recipe(tmp_path, target=5, max_seeds=3)
    _, ds, _ = _build(budget)
    assert read_split(ds.path, "train").height == 3
    assert any("the budget of 3 candidates ran out with 3 of the 5" in n for n in ds.manifest["notes"])
