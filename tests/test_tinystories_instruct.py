"""TinyStories-Instruct: a sentence the story must contain (drawn per story, checked by the filter), and
the instruction-formatted text published beside the story."""

from __future__ import annotations

import pytest

from pathlib import Path

import polars as pl

from pipeline.recipe import load_recipe
from pipeline.tinystories.recipe import StoryFilterConfig, TinyStoriesGenerateConfig
from pipeline.shards import read_split, verify_dataset
from pipeline.tinystories.filters import check_story, contains_sentence
from pipeline.tinystories.prompts import instruction_text, load_sentences, plan_story, story_prompt
from pipeline.tinystories.vocab import load_vocabulary
from tests.conftest import part_recipe, recipe_seed


def test_the_sentence_is_its_own_draw_and_leaves_words_and_features_as_they_were() -> None:
    vocab = load_vocabulary(TinyStoriesGenerateConfig(count=1).vocab_dir)
    plain = TinyStoriesGenerateConfig(count=40)
    asked = TinyStoriesGenerateConfig(count=40, sentence_fraction=0.5)
    sentences = load_sentences(asked.sentences_path)
    got = []
    for i in range(40):
        a, b = plan_story(i, 5, plain, vocab), plan_story(i, 5, asked, vocab)
        assert (a.words, a.features, a.want_summary, a.seed) == (b.words, b.features, b.want_summary, b.seed)
        assert a.sentence is None
        got.append(b.sentence)
        assert b.sentence is None or b.sentence in sentences
        assert plan_story(i, 5, asked, vocab) == b  # the same story whenever it is planned
    assert 8 <= sum(s is not None for s in got) <= 32  # about half of 40
    spec = next(plan_story(i, 5, asked, vocab) for i in range(40) if got[i])
    assert f'contain this exact sentence: "{spec.sentence}"' in story_prompt(spec)
    assert "sentence" not in story_prompt(plan_story(0, 5, plain, vocab))


def test_the_filter_finds_the_sentence_whatever_its_case_spacing_and_quotes() -> None:
    assert contains_sentence('Then "the dog wagged  its tail!" said Tom.', "The dog wagged its tail.")
    assert not contains_sentence("The dog wagged its long tail.", "The dog wagged its tail.")
    assert not contains_sentence("The hotdog wagged its tail.", "The dog wagged its tail.")  # whole words
    story = ("Lily had a red ball. She threw it to her dog Max and Max ran after it very fast. Mom smiled at "
             "them. It was a good day for a walk in the park, and they went home happy.")
    record = {"story": story, "words": ["throw", "ball", "red"], "finish_reason": "stop", "sentence": None}
    vocab = load_vocabulary(TinyStoriesGenerateConfig(count=1).vocab_dir)
    cfg = StoryFilterConfig(min_words=5, min_required_words=0, max_oov_fraction=1.0)
    assert check_story(record, vocab, cfg) is None
    assert check_story(record | {"sentence": "The sun was warm and the sky was blue."}, vocab, cfg) == \
        ("missing_sentence", "The sun was warm and the sky was blue.")
    assert check_story(record | {"sentence": "Mom smiled at them."}, vocab, cfg) is None


def test_the_instruction_text_lists_what_was_asked_then_the_story() -> None:
    text = instruction_text({"story": "Tom ran.", "words": ["run", "hat", "big"], "features": ["Dialogue", "Twist"],
                             "sentence": "He ran as fast as he could.", "summary": "Tom runs."})
    assert text == ("Features: Dialogue, Twist\nWords: run, hat, big\nRandom sentence: He ran as fast as he could.\n"
                    "Summary: Tom runs.\nStory:\nTom ran.")
    assert instruction_text({"story": "Tom ran.", "words": ["run", "hat", "big"], "features": [], "sentence": None,
                             "summary": None}) == "Words: run, hat, big\nStory:\nTom ran."


@pytest.mark.slow
def test_a_build_asked_for_sentences_publishes_them_checked_with_the_instruction_text(tmp_path: Path) -> None:
    from pipeline.kinds import InProcess, run_build
    from pipeline.llm import sampling_params
    from pipeline.tinystories.generate import generate_stories
    from pipeline.tinystories.prompts import plan_stories
    from tests.replay import ScriptedBackend, embedded_model_id, story, store

    path = part_recipe(tmp_path / "r.toml", "instruct", recipe_seed(4), 4, "sentence_fraction = 1.0")
    recipe = load_recipe(path)
    specs = plan_stories(0, 4, recipe.seed, recipe.generate, load_vocabulary(recipe.generate.vocab_dir))
    assert all(s.sentence for s in specs)
    # Stories 0-2 contain their sentence, story 3 does not: every request is answered from the cache.
    texts = {s.seed: story(s.index, s.words) + (f" {s.sentence}" if s.index < 3 else "") for s in specs}
    scripted = ScriptedBackend(embedded_model_id(), lambda call, r: [texts[r.seed]] if call == 0 else None)
    generate_stories(specs, scripted, sampling_params(recipe.sampling))
    store(recipe, scripted)

    outcome = run_build(recipe, InProcess(echo=lambda _: None))
    assert outcome.usage["model_calls"] == 0
    ds = verify_dataset(outcome.published.path)
    rows = read_split(ds.path, "train")
    assert rows.height == 3
    for r in rows.iter_rows(named=True):
        assert r["sentence"] in r["story"] and f"\nRandom sentence: {r['sentence']}\n" in r["instruction_text"]
        assert r["instruction_text"].endswith("Story:\n" + r["story"]) and r["prompt"].count(r["sentence"]) == 1
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert rejected.select("stage", "reason").rows() == [("filter", "missing_sentence")]
    assert rejected["detail"][0] == specs[3].sentence
    assert any(t.startswith("tinystories.sentence@") for t in ds.manifest["prompt_templates"])
