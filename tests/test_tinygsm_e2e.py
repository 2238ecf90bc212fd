"""Real TinyGSM builds: problems and solutions, the sandbox verifies them, the real command re-executes them.

Two kinds of build. The first has the embedded model write problems and solutions, with one problem
preloaded into the response cache, so the invariants are checked on whatever the model samples while
something is always published. The second replays hand-written completions for every problem through
the real build (the response cache in front of the real engine, the real sandbox, the real flow), so
each verification outcome is known in advance: agreement above and at the threshold, below it, a
solution that does not re-run to its answer, and problems copied from Parquet and .txt eval sets.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipeline.code_metrics import COLUMNS as CODE_COLUMNS
from pipeline.code_metrics import code_metrics
from pipeline.fingerprint import file_sha256
from pipeline.shards import read_split, verify_dataset
from pipeline.tinygsm.build import calibration
from tests.conftest import REPO, recipe_seed, write_recipe
from tests.replay import preload_calibration, preload_problems, voted_figures

pytestmark = pytest.mark.slow
FIXTURE = Path(__file__).parent / "fixtures" / "eval_sample.jsonl"
CALIBRATION = 4  # shipped problems the gate is calibrated on (4 samples each); test_calibration.py checks the math
TINYFORGE = str(Path(sys.executable).parent / "tinyforge")
MIN_AGREEMENT = 0.5  # the demo recipe's: two of four samples must agree

# A problem and four sampled solutions, as a small model writes them: fenced or not, with prose around.
KEPT_Q = ("Lena buys 4 boxes of pencils with 6 pencils in each box. She gives 5 pencils to her friend Omar. "
          "How many pencils does she have left?")
KEPT = [
    "```python\ndef simple_math_problem():\n    pencils = 4 * 6\n    left = pencils - 5\n    return left\n```",
    "def simple_math_problem():\n    boxes = 4\n    per_box = 6\n    given = 5\n    return boxes * per_box - given\n",
    "Here is the solution:\n```python\ndef simple_math_problem():\n    total = 24\n    return total - 5\n```\n"
    "It returns 19.",
    "def simple_math_problem():\n    return 4 * 6 + 5\n",  # wrong: 29
]


def small_recipe(tmp_path: Path) -> Path:
    """The demo recipe cut to 8 problems and `CALIBRATION` calibration problems, with a decontamination set;
    its agreement threshold and vote kept."""
    text = (REPO / "flows" / "recipes" / "tinygsm-demo.toml").read_text()
    text = text.replace('output_root = "../../build"', f'output_root = "{tmp_path / "out"}"')
    assert "\nseed = 3\n" in text, "the demo recipe changed: update this test"
    text = text.replace("\nseed = 3\n", f"\nseed = {recipe_seed(3)}\n")
    text = re.sub(r"\ncount = 96 [^\n]*\n", "\ncount = 8\n", text).replace("batch_size = 24", "batch_size = 4")
    text = re.sub(r"\ntarget = \d+ [^\n]*\nmax_candidates = \d+\n", "\n", text)  # one round: tests/test_target.py
    text = text.replace("[decontaminate]\n", f'[decontaminate]\neval_sets = [{{path = "{FIXTURE}"}}]\n')
    text = re.sub(r"(\[calibrate\][^\[]*?\n)limit = 120\n", rf"\1limit = {CALIBRATION}\n", text)
    assert "\ncount = 8\n" in text and "batch_size = 4" in text and "target" not in text, \
        "the demo recipe changed: update this test"
    assert re.search(rf"\[calibrate\][^\[]*?\nlimit = {CALIBRATION}\n", text), "the demo recipe changed: update this test"
    assert f"min_agreement = {MIN_AGREEMENT}\n" in text, "the demo recipe changed: update this test"
    path = tmp_path / "gsm.toml"
    path.write_text(text)
    return path


def test_every_published_solution_was_verified_and_reexecutes(prefect_server: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from flows.build import flow_for

    tinygsm_flow = flow_for("tinygsm")

    recipe = small_recipe(tmp_path)
    # Problem 5 is preloaded (three of its four solutions agree); the model writes the other seven. The
    # calibration's samples are written (tests/replay.voted_samples), so its figures are known exactly;
    # the solver that samples them is the one the model runs for the build's own problems.
    preload_problems(recipe, {5: (KEPT_Q, KEPT)})
    preload_calibration(recipe, calibration)
    result = tinygsm_flow(recipe_path=str(recipe))
    assert result["run_usage"]["cache_hits"] == 1 + 4 + CALIBRATION * 4 and result["run_usage"]["model_calls"] >= 7
    ds = verify_dataset(result["dataset"])
    rows = read_split(ds.path, "train")
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rows.height + rejected.height == 8  # every problem is published or rejected with a reason
    assert set(rejected["stage"]) <= {"generate", "verify", "decontaminate", "dedup"}
    preloaded = rows.filter(pl.col("question") == KEPT_Q)
    assert preloaded.height == 1 and preloaded["answer"][0] == 19 and preloaded["answer_agreement"][0] == 0.75
    assert preloaded["answer_votes"][0] == 3  # three different programs reached 19

    for r in rows.iter_rows(named=True):
        assert r["verification"] == "passed" and r["answer_agreement"] >= MIN_AGREEMENT
        assert len(r["samples"]) == 4
        agreeing = [s for s in r["samples"] if s["value"] is not None and round(s["value"], 6) == r["answer"]]
        assert len(agreeing) == round(r["answer_agreement"] * 4)
        assert r["answer_votes"] == len({s["program"] for s in agreeing}) >= 1
        assert f'"""{r["question"]}"""' in r["code"] and r["parent_id"] == r["seed_id"]
        # the embedded backend enforces the problem's JSON schema with a grammar, so the prompt asked for JSON
        assert r["prompt_template_id"].startswith("tinygsm.question-json@") and r["prompt"].endswith('"..."}')
    for d in rejected.filter(pl.col("reason") == "low_agreement")["detail"]:
        assert d.endswith("needs 50%")  # the threshold applied is the recipe's
    stages = [s["name"] for s in ds.manifest["stages"]]
    assert stages == ["calibrate", "generate", "verify", "decontaminate", "fluency", "dedup", "judge", "score", "prospect"]
    check_calibration(ds, tmp_path)
    assert all(len(t) == 7 for t in rows["loss_trajectory"].to_list()) and rows["difficulty"].is_not_null().all()
    for r in rows.iter_rows(named=True):  # every published program has its code metrics
        assert {c: r[c] for c in CODE_COLUMNS} == code_metrics(r["code"]).columns()
    assert "## Code difficulty" in (ds.path / "report.md").read_text() and "code" in ds.manifest["plots"]
    assert next(s for s in ds.manifest["stages"] if s["name"] == "decontaminate")["stats"]["eval_ngrams"] > 0

    # the user-facing check: re-run every stored solution in the sandbox
    capsys.readouterr()
    assert main(["verify", str(ds.path), "--execute"]) == 0
    assert f"all {rows.height} solutions re-executed" in capsys.readouterr().out

    again = tinygsm_flow(recipe_path=str(recipe))
    assert again["run_usage"]["model_calls"] == 0 and set(again["stages"].values()) == {"reused"}


def check_calibration(ds, tmp_path: Path) -> None:
    """The calibration figures in the manifest, recomputed here from the published verifier rows, and shown
    in the report, the card and `tinyforge inspect`."""
    c = ds.manifest["calibration"]
    assert (c["problems"], c["kept"], c["correct"], c["pass_at_k"]) == (CALIBRATION, *voted_figures(CALIBRATION), 1.0)
    verifier = read_split(ds.path, "verifier")
    assert "verifier" not in ds.splits  # its own configuration, not a split of the records
    cal = verifier.filter(pl.col("source") == "calibration")
    problems = cal.group_by("problem_id").agg(pl.col("problem_kept").first(), pl.col("majority_answer").first(),
                                              pl.col("gold_answer").first(), (pl.col("label") == "correct").any())
    assert problems.height == c["problems"] == CALIBRATION and cal.height == CALIBRATION * 4 == c["samples"]
    right = problems.filter(pl.col("problem_kept") & ((pl.col("majority_answer") - pl.col("gold_answer")).abs() < 1e-6))
    kept = problems["problem_kept"].sum()
    assert c["kept"] == kept and c["correct"] == right.height
    assert c["coverage"] == round(kept / CALIBRATION, 4)
    assert c["pass_at_k"] == round(problems["label"].sum() / CALIBRATION, 4)
    assert c["precision"] == (round(right.height / kept, 4) if kept else None)
    built = verifier.filter(pl.col("source") == "build")
    assert built.height == 4 * built["problem_id"].n_unique()  # every executed sample of every verified problem
    assert set(built.filter(pl.col("problem_kept"))["problem_id"]) >= set(read_split(ds.path, "train")["id"])
    assert "## Calibration" in (ds.path / "report.md").read_text()
    card = (ds.path / "README.md").read_text()
    assert "problems with known answers" in card and "config_name: verifier" in card
    inspect = subprocess.run([TINYFORGE, "inspect", str(ds.path.parent)], capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0 and f"On {c['problems']} problems with known answers" in inspect.stdout


# --- a build replayed from hand-written completions -------------------------------------------------

LIBRARY_EVAL = ("A library has 120 books on each shelf and 8 shelves in the reading room. "
                "How many books are in the reading room altogether?")
GARDEN_EVAL = ("Jun plants 6 rows of tulips with 15 tulips in each row in the school garden. "
               "How many tulips does Jun plant in the school garden?")


def agreeing(expr: str) -> list[str]:
    return [f"def simple_math_problem():\n    return {expr}\n"] * 4


REPLAYED = {
    # three of four agree: kept at 75%
    0: (KEPT_Q, KEPT),
    # two of four agree: exactly the threshold, kept at 50%
    1: ("A farmer has 3 fields with 12 cows in each field. He sells 8 cows at the market. "
        "How many cows does he have now?",
        ["def simple_math_problem():\n    return 3 * 12 - 8\n",
         "def simple_math_problem():\n    cows = 36\n    return cows - 8\n",
         "def simple_math_problem():\n    return 3 * 12 + 8\n",
         "def simple_math_problem():\n    return 36 / 0\n"]),
    # one of four: below the threshold (a threshold of 25% would keep it)
    2: ("Ravi runs 5 laps of a 400 meter track every morning for 6 days. How many meters does he run in total?",
        ["def simple_math_problem():\n    return 5 * 400 * 6\n",
         "def simple_math_problem():\n    return 5 * 400\n",
         "def simple_math_problem():\n    return 5 * 6\n",
         "Ravi runs 2000 meters a day, so 12000 meters in all."]),
    # all four agree, but on values from module-level names that the stored (normalised) code drops
    3: ("A shop sells 7 bags of apples with 9 apples in each bag. How many apples does the shop sell?",
        ["BAGS = 7\nAPPLES_PER_BAG = 9\n\ndef simple_math_problem():\n    return BAGS * APPLES_PER_BAG\n"] * 4),
    # verified, but copied (new numbers) from the Parquet eval set, then from the .txt one
    4: (LIBRARY_EVAL.replace("120", "90").replace("8 shelves", "5 shelves"), agreeing("90 * 5")),
    5: (GARDEN_EVAL.replace("6 rows", "4 rows").replace("15 tulips", "11 tulips"), agreeing("4 * 11")),
}


@pytest.fixture(scope="module")
def replayed(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flows.build import flow_for

    tinygsm_flow = flow_for("tinygsm")

    tmp = tmp_path_factory.mktemp("gsm-replay")
    pl.DataFrame({"question": ["What is 2 plus 2?", LIBRARY_EVAL]}).write_parquet(tmp / "evals.parquet")
    (tmp / "evals.txt").write_text(f"{GARDEN_EVAL}\n\nHow many legs do 3 spiders have?\n")
    recipe = write_recipe(tmp / "replay.toml", f"""
        name = "gsm-replay"
        kind = "tinygsm"
        seed = 3
        output_root = "{tmp / 'out'}"
        [generate]
        count = {len(REPLAYED)}
        batch_size = {len(REPLAYED)}
        samples = 4
        [verify]
        min_agreement = {MIN_AGREEMENT}
        votes = "samples"  # the hand-written agreeing solutions are one program four times
        [calibrate]
        enabled = false
        [decontaminate]
        eval_sets = [{{path = "evals.parquet"}}, {{path = "evals.txt"}}]
        [difficulty]
        enabled = false
        [publish]
        validation_fraction = 0.0
    """)
    preload_problems(recipe, REPLAYED)
    result = tinygsm_flow(recipe_path=str(recipe))
    return {"result": result, "tmp": tmp}


def test_a_replayed_build_keeps_exactly_the_problems_that_agree_and_reproduce(replayed: dict) -> None:
    result = replayed["result"]
    # every completion came from the cache: nothing here depends on what the model would sample
    assert result["run_usage"]["model_calls"] == 0 and result["run_usage"]["cache_hits"] == 6 + 6 * 4
    ds = verify_dataset(result["dataset"])
    rows = read_split(ds.path, "train").sort("answer")
    assert rows["question"].to_list() == [KEPT_Q, REPLAYED[1][0]]
    assert rows["answer"].to_list() == [19, 28] and rows["answer_agreement"].to_list() == [0.75, 0.5]
    assert [[s["status"] for s in samples] for samples in rows["samples"].to_list()] == [
        ["ok", "ok", "ok", "ok"], ["ok", "ok", "ok", "error"]]
    assert rows["code"][0].startswith("def simple_math_problem() -> int:")

    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    why = {json.loads(r["record_json"])["question"]: (r["stage"], r["reason"], r["detail"])
           for r in rejected.iter_rows(named=True)}
    assert why[REPLAYED[2][0]] == ("verify", "low_agreement", "1/4 samples agree on 12000; needs 50%")
    stage, reason, detail = why[REPLAYED[3][0]]
    assert (stage, reason) == ("verify", "nondeterministic") and "first runs agreed on 63" in detail
    stage, reason, detail = why[REPLAYED[4][0]]
    assert (stage, reason) == ("decontaminate", "contaminated") and detail.endswith("in evals.parquet#1")
    stage, reason, detail = why[REPLAYED[5][0]]
    assert (stage, reason) == ("decontaminate", "contaminated") and detail.endswith("in evals.txt#0")
    assert len(why) == 4
    decontaminate = next(s for s in ds.manifest["stages"] if s["name"] == "decontaminate")
    assert decontaminate["stats"]["eval_texts"] == 4  # two Parquet rows, two non-empty .txt lines


def test_verify_execute_fails_on_a_published_answer_that_was_changed(replayed: dict) -> None:
    src = Path(replayed["result"]["dataset"])
    ds_path = replayed["tmp"] / "tampered"
    shutil.copytree(src, ds_path)
    manifest = json.loads((ds_path / "manifest.json").read_text())
    (shard,) = manifest["splits"]["train"]["shards"]
    f = ds_path / shard["path"]
    table = pq.read_table(f)
    answers = table.column("answer").to_pylist()
    wrong = [a + 1 for a in answers[:1]] + answers[1:]
    field = table.schema.field("answer")
    table = table.set_column(table.schema.get_field_index("answer"), field, pa.array(wrong, type=field.type))
    pq.write_table(table, f)
    shard["bytes"], shard["sha256"] = f.stat().st_size, file_sha256(f)  # the checksums match again
    (ds_path / "manifest.json").write_text(json.dumps(manifest, indent=2))

    plain = subprocess.run([TINYFORGE, "verify", str(ds_path)], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and "checksums match" in plain.stdout, plain.stderr  # only the answer is wrong
    run = subprocess.run([TINYFORGE, "verify", str(ds_path), "--execute"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    row_id = table.column("id")[0].as_py()
    assert f"  mismatch: {row_id}: stored answer {wrong[0]:g}, re-run gave ok {answers[0]!r}" in run.stdout
    assert run.stderr == f"tinyforge: error: 1 of {len(answers)} records do not re-execute to their answer\n"

    untouched = subprocess.run([TINYFORGE, "verify", str(src), "--execute"], capture_output=True, text=True,
                               timeout=300)
    assert untouched.returncode == 0 and f"all {len(answers)} solutions re-executed" in untouched.stdout
