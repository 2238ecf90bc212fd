"""The fluency score and `tinyforge judge-eval` on the shipped labeled sets, with the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.errors import UserError
from pipeline.fluency import fluency_losses, too_disfluent
from pipeline.judge_eval import LABELED_DIR, SETS, Labeled, load_labeled, separation


def test_separation_is_auroc_against_all_bad_and_each_failure() -> None:
    items = [Labeled("a", True, None, ""), Labeled("b", True, None, ""), Labeled("c", False, "x", ""),
             Labeled("d", False, "y", "")]
    rows = {r["against"]: r for r in separation(items, [0.9, 0.5, 0.1, 0.7])}
    assert rows["all bad"]["auroc"] == 0.75 and rows["all bad"]["bad"] == 2
    assert rows["x"]["auroc"] == 1.0 and rows["y"]["auroc"] == 0.5
    # a text without a score ranks below every scored one, and is counted
    rows = {r["against"]: r for r in separation(items, [None, 0.5, 0.1, None])}
    assert rows["x"]["auroc"] == 0.5 and rows["y"]["auroc"] == 0.75 and rows["all bad"]["unscored"] == 2


def test_the_labeled_sets_have_both_labels_and_named_failures() -> None:
    for name in SETS:
        items = load_labeled(LABELED_DIR / SETS[name])
        assert sum(i.good for i in items) >= 6 and sum(not i.good for i in items) >= 6
        assert all(i.failure for i in items if not i.good) and len({i.id for i in items}) == len(items)


def test_a_bad_labeled_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"label": "fine", "text": "t"}) + "\n")
    with pytest.raises(UserError, match=r"x.jsonl:1: a labeled text needs label good\|bad"):
        load_labeled(path)
    path.write_text(json.dumps({"label": "good", "text": "t"}) + "\n")
    with pytest.raises(UserError, match="needs both good and bad"):
        load_labeled(path)


def test_the_threshold_rejects_above_it_and_what_cannot_be_scored() -> None:
    assert too_disfluent(4.2, 4.0) and not too_disfluent(3.9, 4.0) and not too_disfluent(9.0, None)
    assert too_disfluent(None, 4.0)


@pytest.mark.slow
def test_fluency_separates_incoherent_and_ungrammatical_stories(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.difficulty.ifd import LlamaScorer

    items = {i.id: i for i in load_labeled(LABELED_DIR / "stories.jsonl")}
    good, incoherent = items["s-good-01"].text, items["s-bad-01"].text
    losses = fluency_losses([good, incoherent, "   "], LlamaScorer())
    assert losses[2] is None and losses[0] is not None and losses[1] is not None
    assert losses[1] > losses[0] + 0.5  # measured: 2.8 against 4.3

    assert main(["judge-eval", "--set", "stories"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[3].strip(): float(line.split("|")[7]) for line in out.splitlines()
            if line.startswith("| stories")}
    assert rows["incoherent"] >= 0.9 and rows["ungrammatical"] >= 0.9
    assert set(rows) == {"all bad", "incoherent", "meta_text", "missing_words", "off_topic", "unfinished",
                         "ungrammatical"}


@pytest.mark.slow
def test_judge_eval_with_a_recipes_judge_scores_every_text_through_its_backend(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tinyforge judge-eval --judge RECIPE`: the recipe's judge backend grades every labeled text, and its
    AUROC is worked out from those verdicts. The judge here is a server on 127.0.0.1 that knows the labels
    (9 for a good problem, 2 for a bad one) and cannot be read on one good problem: the AUROC the table
    must print follows from that alone, (good - 1) / good, with one text without a score."""
    from tests.conftest import write_recipe
    from tests.servers import ScriptedServer, chat_reply

    items = load_labeled(LABELED_DIR / SETS["math"])
    unreadable = next(i for i in items if i.good)
    asked: list[str] = []

    def grade(body: dict, _: int):
        prompt = body["messages"][0]["content"]  # a retry adds turns after the grading prompt
        # the set has the same problem with a right and a wrong program: the text and the code name one
        (item,) = [i for i in items if f"Problem: {i.text}\n" in prompt and f"\n{i.fields['code']}" in prompt]
        asked.append(item.id)
        score = 9 if item.good else 2
        text = "I cannot grade this." if item is unreadable else json.dumps(
            {"well_posed": score, "answers_question": score})
        return 200, {}, chat_reply(text)

    with ScriptedServer(grade) as server:
        recipe = write_recipe(tmp_path / "judge.toml", f"""
            name = "judged"
            kind = "tinystories"  # any kind: the judge grades each set with its own kind's rubric
            output_root = "{tmp_path / 'out'}"
            [generate]
            count = 1
            [judge]
            retries = 1
            [judge.backend]
            kind = "openai"
            base_url = "{server.url}"
            model = "grader"
            api_key_env = "NONE"
            """)
        assert main(["judge-eval", "--set", "math", "--judge", str(recipe)]) == 0
    # every text asked once, the unreadable one twice (the first try and its one retry)
    assert sorted(asked) == sorted([i.id for i in items] + [unreadable.id])
    rows = {(cells[1], cells[2]): cells for line in capsys.readouterr().out.splitlines()
            if line.startswith("| math") and (cells := [c.strip() for c in line.split("|")[1:-1]])}
    good = sum(i.good for i in items)
    mean = rows[("judge openai/grader: mean", "all bad")]
    assert (int(mean[3]), int(mean[4]), int(mean[5])) == (good, len(items) - good, 1)
    assert float(mean[6]) == round((good - 1) / good, 3)
    assert ("fluency", "all bad") in {(k[0].split()[0], k[1]) for k in rows}  # the fluency signal beside it
