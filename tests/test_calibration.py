"""Calibration figures, the vote over distinct programs, and `tinyforge compare`, on hand-made data.

The real run (the embedded model solving shipped seeds inside a build, figures recomputed from the
published verifier rows) is in tests/test_tinygsm_e2e.py; these pin the arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.errors import UserError
from pipeline.errors import BuildFailed
from pipeline.solving.calibrate import BANDS, breakdown, difficulty_bands, load_gold, said_on_failure, sentence, summarize
from pipeline.solving.canonical import canonical_program, program_key
from pipeline.solving.verify import vote


def rows(problem: str, gold: float, values: list[float | None], programs: list[str | None], kept: bool) -> list[dict]:
    return [{"problem_id": problem, "value": v, "program": p, "gold_answer": gold, "problem_kept": kept,
             "status": "ok" if v is not None else "error"} for v, p in zip(values, programs, strict=True)]


def test_equal_programs_after_normalisation_share_an_id() -> None:
    a = "def simple_math_problem():\n    # apples\n    apples = 3 * 4\n    return apples + 2\n"
    b = 'def simple_math_problem() -> int:\n    """Doc."""\n    n = 3*4\n\n    return n + 2  # done\n'
    c = "def simple_math_problem():\n    return 3 * 4 + 2\n"
    assert program_key(a) == program_key(b) != program_key(c)
    assert "import math" in canonical_program("import math\ndef simple_math_problem():\n    return math.pi\n")
    assert program_key(None) is None and program_key("def (") == program_key("def (")  # unparsable: itself


def test_a_vote_counts_programs_or_samples() -> None:
    values, programs = [14.5, 14.5, 14.5, 3.0], ["p", "p", "q", "r"]
    assert vote(values, programs, distinct=True) == (14.5, 2)
    assert vote(values, programs, distinct=False) == (14.5, 3)
    assert vote([1.0, 2.0], ["a", "b"], distinct=True) == (1.0, 1)  # a tie goes to the answer reached first
    assert vote([None, None], [None, None], distinct=True) == (None, 0)


def test_summary_figures() -> None:
    data = (rows("a", 10, [10, 10, 7, None], ["x", "y", "z", None], kept=True)       # kept, right
            + rows("b", 5, [6, 6, 6, 5], ["x", "x", "x", "y"], kept=True)             # kept, wrong: one program 3x
            + rows("c", 2, [2, 9, None, None], ["x", "y", None, None], kept=False)    # tie, 2 first: right, not kept
            + rows("d", 4, [None] * 4, [None] * 4, kept=False))                       # nothing
    s = summarize(data, k=4, min_agreement=0.5, distinct=True)
    assert (s["problems"], s["kept"], s["correct"]) == (4, 2, 1)
    assert s["coverage"] == 0.5 and s["precision"] == 0.5
    assert s["pass_at_k"] == 0.75  # a, b (its 4th sample) and c have a right sample
    assert s["false_positive_rate"] == 1.0  # b is the one problem whose majority is wrong, and it was kept
    curve = {(p["votes"], p["min_votes"]): p for p in s["curve"]}
    assert curve[("samples", 3)]["kept"] == 1 and curve[("samples", 3)]["precision"] == 0.0  # b: 3 samples agree
    assert curve[("distinct", 2)]["kept"] == 1 and curve[("distinct", 2)]["precision"] == 1.0  # a: 2 programs
    assert curve[("distinct", 3)]["kept"] == 0 and curve[("distinct", 3)]["precision"] is None
    assert "kept 50% and was right on 50%" in sentence(s) and "may be wrong" in sentence(s)
    assert "kept none" in sentence({**s, "kept": 0})


def test_breakdown_by_topic() -> None:
    problems = [{"topic": "money", "kept": True, "correct": True}, {"topic": "money", "kept": False, "correct": False},
                {"topic": None, "kept": True, "correct": False}]
    assert breakdown(problems, "topic") == [
        {"topic": "money", "problems": 2, "kept": 1, "coverage": 0.5, "precision": 1.0},
        {"topic": "?", "problems": 1, "kept": 1, "coverage": 1.0, "precision": 0.0}]


def test_learning_percentage_bands_cover_the_problems_with_a_solution() -> None:
    from pipeline.paths import SEEDS_FILE
    from pipeline.difficulty.config import DifficultyConfig

    problems = load_gold(SEEDS_FILE, 12)
    assert all(p.solution for p in problems)
    solved = [{"kept": i % 3 == 0, "correct": i % 6 == 0} for i in range(12)]
    cfg = DifficultyConfig(ifd=False)  # the default proxy: a few seconds on 12 pairs
    bands = difficulty_bands(solved, problems, cfg, seed=3)
    assert [b["band"] for b in bands] == list(BANDS)
    assert sum(b["problems"] for b in bands) == 12 and sum(b["kept"] for b in bands) == 4
    assert all(b["precision"] in (None, 0.0, 0.5, 1.0) for b in bands)
    # too few problems for quarters to mean anything: no table rather than four rows of one
    assert difficulty_bands(solved[:7], problems[:7], cfg, seed=3) == []


def test_a_failed_build_still_says_what_calibration_measured() -> None:
    summary = {"problems": 20, "kept": 0, "coverage": 0.0, "precision": None}
    with pytest.raises(BuildFailed, match="nothing survived. On 20 problems with known answers, this verification kept none"):
        with said_on_failure(summary):
            raise BuildFailed("nothing survived.")
    with pytest.raises(BuildFailed, match="^nothing survived.$"), said_on_failure(None):
        raise BuildFailed("nothing survived.")


def test_gold_problems_from_a_gsm8k_file(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
        {"question": "No answer here?", "answer": "unknown"},
        {"question": "Shown as the example?", "answer": "#### 1"},
        {"question": "Ann has 2,000 stamps. How many?", "answer": "#### 2,000"}]) + "\n")
    gold = load_gold(path, None, exclude=["Shown as the example?"])
    assert [(g.id, g.answer) for g in gold] == [("line-1", 7.0), ("line-4", 2000.0)]
    assert [g.answer for g in load_gold(path, 1)] == [7.0]
    with pytest.raises(UserError, match="no problems with a numeric"):
        load_gold(path, None, answer_field="missing")


def _build(root: Path, name: str, k: int, coverage: float, precision: float, tokens: int) -> None:
    (root / name / "dataset").mkdir(parents=True)
    (root / name / "recipe.json").write_text("{}")
    calibration = {"k": k, "votes": "distinct", "min_agreement": 0.5, "min_votes": 1, "problems": 100,
                   "kept": int(coverage * 100), "correct": int(coverage * precision * 100), "coverage": coverage,
                   "precision": precision, "false_positive_rate": 0.2, "pass_at_k": 0.6,
                   "completion_tokens": tokens}
    (root / name / "dataset" / "manifest.json").write_text(json.dumps({
        "build_id": f"{name}-abc", "models": [f"model-{name}"], "calibration": calibration,
        "recipe": {"solution_sampling": {"temperature": 0.7}}}))


def test_compare_sets_two_builds_side_by_side_per_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _build(tmp_path, "big-k2", 2, 0.4, 0.8, 20_000)
    _build(tmp_path, "small-k8", 8, 0.5, 0.6, 80_000)
    assert main(["compare", "big-k2", "small-k8", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| figure | big-k2-abc | small-k8-abc |" in out
    assert "| precision | 80% | 60% |" in out and "| coverage | 40% | 50% |" in out
    assert "| tokens per right kept answer | 625 | 2,667 |" in out  # 20,000 / 32 and 80,000 / 30
    (tmp_path / "prose" / "dataset").mkdir(parents=True)
    (tmp_path / "prose" / "recipe.json").write_text("{}")
    (tmp_path / "prose" / "dataset" / "manifest.json").write_text(json.dumps({"build_id": "p"}))
    assert main(["compare", "big-k2", "prose", "--output-root", str(tmp_path)]) == 2
    assert "no calibration" in capsys.readouterr().err
