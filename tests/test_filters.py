"""Each filter rule, on stories written to trip exactly that rule."""

from __future__ import annotations

import pytest

from pipeline.paths import VOCAB_DIR
from pipeline.tinystories.recipe import StoryFilterConfig
from pipeline.tinystories.filters import check_story, filter_stories, out_of_vocabulary
from pipeline.tinystories.vocab import load_vocabulary

GOOD = (
    "Lily had a little red ball. She liked to jump with her ball in the park. "
    "One day, the ball hung on a big tree. Lily was sad. \"Help me, Mom!\" she said.\n\n"
    "Mom came and got the ball down. Lily was happy again. She gave Mom a big hug. "
    "They played with the ball until the sun went down."
)
WORDS = ["jump", "ball", "happy"]  # verb, noun, adjective


def record(story: str, words: list[str] = WORDS, finish: str = "stop") -> dict:
    return {"id": "0" * 16, "story": story, "words": words, "finish_reason": finish}


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary(VOCAB_DIR)


CFG = StoryFilterConfig(min_words=20, max_words=200)


def test_good_story_passes(vocab) -> None:
    assert check_story(record(GOOD), vocab, CFG) is None


def test_inflected_words_count(vocab) -> None:
    story = GOOD.replace("to jump", "jumping").replace("was happy", "was happier")
    assert check_story(record(story), vocab, CFG) is None


@pytest.mark.parametrize(
    ("story", "finish", "reason"),
    [
        (GOOD, "length", "unfinished"),
        (GOOD + " Then they went to the", "stop", "unfinished"),
        ("**The Ball**\n\n" + GOOD, "stop", "markup"),
        (GOOD + " In this story, the verb \"jump\" is used with simple words.", "stop", "meta_text"),
        ("Lily hatte einen kleinen roten Ball. Sie wollte springen und war froh. " * 3, "stop", "non_english"),
        ("Lily liked to jump. The ball was happy.", "stop", "too_short"),
        ((GOOD + " ") * 4, "stop", "too_long"),
        (GOOD + " She hopped again and" * 30 + " stopped.", "stop", "repetitive"),
        (GOOD.replace("jump", "sing"), "stop", "missing_words"),
        ("Lily would jump in the ball pit, happy yet contemplating the epistemological ramifications of "
         "quantum decoherence. Her hypothesis concerning stochastic thermodynamics necessitated rigorous "
         "experimentation, meticulous documentation and considerable perseverance.", "stop", "out_of_vocabulary"),
    ],
)
def test_each_rule_rejects_with_its_reason(vocab, story: str, finish: str, reason: str) -> None:
    verdict = check_story(record(story, finish=finish), vocab, CFG)
    assert verdict is not None and verdict[0] == reason, verdict


def test_min_required_words_counts_the_words_present(vocab) -> None:
    one_missing = record(GOOD.replace("jump", "sing"))
    assert check_story(one_missing, vocab, CFG)[0] == "missing_words"
    assert check_story(one_missing, vocab, CFG.model_copy(update={"min_required_words": 2})) is None
    none_present = record(GOOD, words=["fly", "cow", "green"])
    assert check_story(none_present, vocab, CFG.model_copy(update={"min_required_words": 1}))[1] == "fly, cow, green"
    assert check_story(none_present, vocab, CFG.model_copy(update={"min_required_words": 0})) is None


def test_names_are_not_out_of_vocabulary(vocab) -> None:
    oov = out_of_vocabulary("Then Zorblax the dragon jumped. Zorblax was happy.", vocab)
    assert oov == ["zorblax"]  # first word of a sentence is not assumed to be a name


def test_rejected_rows_keep_the_record_and_reason(vocab) -> None:
    kept, rejected = filter_stories([record(GOOD), record(GOOD, finish="length")], vocab, CFG)
    assert len(kept) == 1 and len(rejected) == 1
    row = rejected[0]
    assert row["stage"] == "filter" and row["reason"] == "unfinished" and row["text"] == GOOD
    assert '"finish_reason": "length"' in row["record_json"]
