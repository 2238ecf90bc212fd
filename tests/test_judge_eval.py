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
