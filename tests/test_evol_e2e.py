"""Real Evol-Instruct builds: the embedded model evolves, answers and (for math) solves in the sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from pipeline.evol.operations import OPERATIONS
from pipeline.llm.types import derive_seed
from pipeline.recipe import load_recipe
from pipeline.shards import read_split, verify_dataset
from tests.conftest import REPO
from tests.replay import preload_calibration, preload_evolution, voted_figures


pytestmark = pytest.mark.slow

EVOLUTION_REASONS = {"empty", "template_leak", "copied_prompt", "not_an_instruction", "length_out_of_bounds",
                     "no_information_gain"}
RESPONSE_REASONS = {"refusal", "stopwords_only", "response_too_short", "response_truncated",
                    "response_copies_instruction"}


def demo_recipe(tmp_path: Path, **replace: str) -> Path:
    text = (REPO / "flows" / "recipes" / "evol-demo.toml").read_text()
    text = text.replace('output_root = "../../build"', f'output_root = "{tmp_path / "out"}"')
    # The demo uses the default seed pool; name it, so that a test can swap it for another file.
    text = re.sub(r"^\[seeds\].*$", lambda m: f'{m[0]}\npath = "{REPO / "data" / "seeds" / "instructions.jsonl"}"',
                  text, count=1, flags=re.M)
    for old, new in replace.items():
        assert old in text, f"the demo recipe changed: {old!r} is gone"
        text = text.replace(old, new)
    # one round of the build: the target's rounds are tests/test_evol_target.py's
    text, n = re.subn(r"\ntarget = 20 [^\n]*\nmax_seeds = 60 [^\n]*\n", "\n", text)
    assert n == 1, "the demo recipe changed: update this test"
    # Shorter responses than the demo's: these tests check lineage and the gate, not the prose, and the
    # responses are most of a round's decoding on 2 cores.
    assert "\n[response_sampling]" in text and "max_tokens = 320" in text, "the demo recipe changed"
    text = re.sub(r"(\[response_sampling\][^\[]*?)max_tokens = 320", r"\1max_tokens = 96", text)
    # and shorter evolutions: an instruction fits in 96 tokens, and one cut off is eliminated with its reason
    assert "\n[sampling]" in text and "max_tokens = 160" in text, "the demo recipe changed"
    text = re.sub(r"(\[sampling\][^\[]*?)max_tokens = 160", r"\1max_tokens = 96", text)
    path = tmp_path / "evol.toml"
    path.write_text(text)
    return path


def test_rounds_keep_lineage_and_every_failure_has_a_reason(prefect_server: str, tmp_path: Path) -> None:
    from flows.build import flow_for

    evolve_flow = flow_for("evol_instruct")

    # Two of the six seeds evolve in round 1 as written here: their evolutions and responses are
    # preloaded into the response cache (for the request a build sends, exemplar turns included), so
    # something survives whatever the model samples on this CPU for the rest (the other four seeds in
    # round 1, everything else in round 2).
    lines = (REPO / "data" / "seeds" / "instructions.jsonl").read_text().splitlines()
    replayed = set(WRITTEN)
    chosen = [line for line in lines if json.loads(line)["id"] in replayed]
    chosen += [line for line in lines if json.loads(line)["id"] not in replayed][: 6 - len(chosen)]
    (tmp_path / "seeds.jsonl").write_text("\n".join(chosen) + "\n")
    recipe = demo_recipe(tmp_path, **{"limit = 24": "limit = 6", "rounds = 4": "rounds = 2",
                                      "batch_size = 24": "batch_size = 4",
                                      # lineage is checked here; difficulty on evolutions is the golden build's
                                      "[publish]": "[difficulty]\nenabled = false\n\n[publish]",
                                      str(REPO / "data" / "seeds" / "instructions.jsonl"): str(tmp_path / "seeds.jsonl")})
    first_round = {}
    for line in chosen:
        seed = json.loads(line)
        if seed["id"] in WRITTEN:
            first_round[seed["id"]] = preload_evolution(recipe, seed, 1, *WRITTEN[seed["id"]])
    # and one of those evolves again in round 2 as written: a round-2 record whatever the model writes
    second = preload_evolution(recipe, first_round["inst-018"], 2, *WRITTEN_ROUND_2)
    result = evolve_flow(recipe_path=str(recipe))
    assert result["run_usage"]["cache_hits"] == 6  # three evolutions and their responses were preloaded
    assert result["run_usage"]["model_calls"] >= 4 + 5  # the model evolved the rest, in both rounds
    ds = verify_dataset(result["dataset"])
    rows = read_split(ds.path, "train")
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    stages = {s["name"]: s for s in ds.manifest["stages"]}
    assert list(stages) == ["seeds", "round-1", "round-2", "evolved", "decontaminate", "fluency", "dedup", "judge", "score", "prospect"]

    # Every attempt of every round is a survivor or a rejection with a known reason.
    for r in (1, 2):
        s = stages[f"round-{r}"]
        assert s["stats"]["in"] == s["rows"]["records"] + s["rows"]["rejected"]
    assert stages["round-1"]["stats"]["in"] == 6
    # the next pool: round-1's survivors plus the parents whose evolution failed (retried)
    assert stages["round-2"]["stats"]["in"] == stages["round-1"]["rows"]["pool"] == 6
    evolution = rejected.filter(pl.col("stage").str.starts_with("round-"))
    assert set(evolution["reason"]) <= EVOLUTION_REASONS | RESPONSE_REASONS
    assert rows.height + evolution.height + rejected.filter(pl.col("stage") == "dedup").height == 12

    seeds = {json.loads(line)["id"]: json.loads(line)["instruction"] for line in chosen}
    evolved = pl.read_parquet(Path(stages["evolved"]["path"]) / "records.parquet")
    by_id = {r["id"]: r for r in evolved.iter_rows(named=True)}
    round_1 = evolved.filter(pl.col("round") == 1)
    assert replayed <= set(round_1["root_id"])  # the replayed evolutions survived round 1
    # the preloaded round-2 evolution is there, child of the preloaded round-1 one, which is seed inst-018's
    assert by_id[second["id"]]["round"] == 2 and by_id[second["id"]]["parent_id"] == first_round["inst-018"]["id"]
    assert by_id[first_round["inst-018"]["id"]]["parent_id"] == "inst-018"
    recipe_seed = load_recipe(recipe).seed
    for r in evolved.iter_rows(named=True):  # every survivor of both rounds: both lineage branches always run
        assert r["root_id"] in seeds and r["operation"] in OPERATIONS and r["round"] in (1, 2)
        assert r["evolver_model"].startswith("llamacpp/SmolLM2-135M") and r["responder_model"] == r["evolver_model"]
        assert r["verification"] == "not_applicable" and r["answer"] is None and r["response"]
        if r["round"] == 1:
            assert r["parent_id"] == r["root_id"]
        else:  # a round-2 record evolved from a round-1 survivor, or from a seed that failed in round 1
            parent = by_id.get(r["parent_id"])
            assert r["parent_id"] in seeds or (parent["round"] == 1 and parent["root_id"] == r["root_id"])
        assert r["prompt"].endswith(("Rewritten prompt:", "Created prompt:"))
        # each evolution's own seed, derived from the recipe's seed, its round and its parent
        assert r["sampling"]["seed"] == derive_seed(recipe_seed, "evolve", r["round"], r["parent_id"])
    assert rows.height >= 1 and set(rows["id"]) <= set(by_id)
    report = (ds.path / "report.md").read_text()
    assert "## Evolution" in report and "Survival per operation" in report and "| round 2 |" in report

    again = evolve_flow(recipe_path=str(recipe))
    assert again["run_usage"]["model_calls"] == 0 and set(again["stages"].values()) == {"reused"}


# inst-018's round-1 evolution evolved again in round 2, and the response: passes every elimination rule
WRITTEN_ROUND_2 = (
    "Suggest a simple plan for learning ten new words a week, with one short game for each day, and a way "
    "to check on Sunday which words you still forget.",
    "Monday to Friday, learn two words a day with a card game: flip the card, say the word, use it in a "
    "sentence. On Saturday, play all ten cards as a memory game. On Sunday, ask someone to read each word "
    "to you; put the ones you miss in a pile to practise first next week.")

# seed id -> (its evolution in round 1, the response): instructions that pass every elimination rule
WRITTEN = {
    "inst-018": ("Suggest a simple plan for learning ten new words a week, with one short game for each day.",
                 "Monday: pick ten words and write each on a card. Tuesday: play memory with the cards. "
                 "Wednesday: use five words in sentences. Thursday: use the other five. Friday: ask a friend "
                 "to quiz you, and keep the cards you missed for next week."),
    "inst-021": ("Suggest a healthy breakfast for a school day that takes less than ten minutes and has no eggs.",
                 "Try oatmeal made with milk, topped with a sliced banana and a spoon of peanut butter. It takes "
                 "about five minutes in a pot, gives you energy for the morning, and has no eggs at all."),
}


def test_math_pool_evolutions_must_be_solvable_in_the_sandbox(prefect_server: str, tmp_path: Path) -> None:
    from flows.build import flow_for
    from pipeline.evol.build import calibration

    evolve_flow = flow_for("evol_instruct")

    recipe = demo_recipe(tmp_path, **{
        'path = "' + str(REPO / "data" / "seeds" / "instructions.jsonl") + '"':
            'path = "' + str(REPO / "data" / "seeds" / "gsm_seeds.jsonl") + '"',
        "limit = 24": "limit = 4", "rounds = 4": "rounds = 1", "batch_size = 24": "batch_size = 4",
        # Loose problem checks, so that more of the model's evolutions reach the sandbox; the agreement
        # threshold is the default (two of four samples). The gate is calibrated on 8 shipped problems (the
        # fewest that get the learning-percentage quarters).
        "[publish]": "[math.filter]\nmin_words = 6\nmin_numbers = 1\nrequire_question = false\n\n"
                     "[calibrate]\nlimit = 8\n\n[publish]"})
    # The first seed's evolution and its four solutions are preloaded into the response cache (three of
    # the four agree): something passes the gate whatever the model samples for the other three seeds.
    seed = json.loads((REPO / "data" / "seeds" / "gsm_seeds.jsonl").read_text().splitlines()[0])
    preload_evolution(recipe, {"id": seed["id"], "instruction": seed["question"]}, 1, MATH_EVOLUTION,
                      solutions=MATH_SOLUTIONS)
    # The calibration's samples are written too (tests/replay.voted_samples): the gate's figures are then
    # known exactly, and the model's time goes to the evolutions, which are what this test is about.
    preload_calibration(recipe, calibration)
    result = evolve_flow(recipe_path=str(recipe))
    # the model evolved the other three seeds (and solved those evolutions that pass the problem checks)
    assert result["run_usage"]["cache_hits"] == 1 + 4 + 8 * 4 and result["run_usage"]["model_calls"] >= 3
    ds = verify_dataset(result["dataset"])
    assert ds.manifest["stages"][0]["stats"]["math"] is True
    assert [s["name"] for s in ds.manifest["stages"]][:3] == ["seeds", "calibrate", "round-1"]
    rows = read_split(ds.path, "train")
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rows.height + rejected.height == 4
    mine = rows.filter(pl.col("instruction") == MATH_EVOLUTION)
    assert mine.height == 1 and mine["answer"][0] == 3.5 and mine["answer_agreement"][0] == 0.75
    assert mine["root_id"][0] == seed["id"]
    for r in rows.iter_rows(named=True):
        assert r["verification"] == "passed" and r["answer"] is not None and r["answer_agreement"] >= 0.5
        assert r["response"].startswith("def simple_math_problem()") and f'"""{r["instruction"]}"""' in r["response"]
    assert main(["verify", str(ds.path), "--execute"]) == 0  # the stored solutions re-run to their answers
    unsolvable = rejected.filter(pl.col("reason") == "unsolvable")
    for d in unsolvable["detail"]:
        assert d.split(":")[0] in {"low_agreement", "no_numeric_answer", "no_code", "nondeterministic"}
    check_gate_calibration(ds, rows, unsolvable.height)


def check_gate_calibration(ds, rows: pl.DataFrame, unsolvable: int) -> None:
    """The gate's calibration figures are what its published verifier rows say, and every sample the
    gate executed is a verifier row."""
    from pipeline.solving.calibrate import summarize

    c = ds.manifest["calibration"]
    # what tests/replay.voted_samples wrote: 6 of the 8 problems agree, 2 of them on a wrong answer
    assert (c["problems"], c["kept"], c["correct"], c["pass_at_k"]) == (8, *voted_figures(8), 1.0) == (8, 6, 4, 1.0)
    verifier = read_split(ds.path, "verifier")
    cal = verifier.filter(pl.col("source") == "calibration")
    assert c["problems"] == cal["problem_id"].n_unique() == 8 and cal.height == 8 * 4
    assert cal["gold_answer"].is_not_null().all() and set(cal["label"]) <= {"correct", "wrong"}
    recomputed = summarize(cal.to_dicts(), 4, c["min_agreement"], c["votes"] == "distinct", c["min_votes"])
    assert {k: c[k] for k in recomputed} == recomputed
    assert [b["band"] for b in c["by_learning_percentage"]] == ["easiest quarter", "second quarter",
                                                                "third quarter", "hardest quarter"]
    gate = verifier.filter(pl.col("source") == "build")  # the build's own problems: here its evolutions
    # every evolution that reached the sandbox: the published ones and the unsolvable ones, 4 samples each
    assert gate["problem_id"].n_unique() == rows.height + unsolvable and gate.height == 4 * gate["problem_id"].n_unique()
    assert set(gate.filter(pl.col("problem_kept"))["problem_id"]) >= set(rows["id"])
    assert gate.filter(pl.col("question") == MATH_EVOLUTION)["value"].to_list().count(3.5) == 3
    report = (ds.path / "report.md").read_text()
    assert "## Calibration of the solvability gate" in report and "Kept and right by learning percentage" in report
    assert "problems with known answers" in (ds.path / "README.md").read_text()


MATH_EVOLUTION = ("Maya buys 3 notebooks that cost $4 each and 2 pens that cost $1.25 each. She also buys a ruler "
                  "for $2 and pays with a $20 bill. How much change does she get back from the cashier?")
MATH_SOLUTIONS = [
    "```python\ndef simple_math_problem():\n    spent = 3 * 4 + 2 * 1.25 + 2\n    return 20 - spent\n```",
    "def simple_math_problem():\n    notebooks = 3 * 4\n    pens = 2 * 1.25\n    ruler = 2\n"
    "    return 20 - (notebooks + pens + ruler)\n",
    "Here it is:\n```python\ndef simple_math_problem():\n    change = 20 - 16.5\n    return change\n```",
    "def simple_math_problem():\n    return 20 - 3 * 4 - 2 * 1.25\n",  # forgot the ruler: 5.5
]
