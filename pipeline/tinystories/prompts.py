"""TinyStories prompts: three random words and a random set of story features.

Following Eldan & Li (2023), each story asks for one verb, one noun and one
adjective drawn at random from a child's vocabulary, plus a random subset
(possibly empty) of features. The wording is tinyforge's own. A template's id
carries a hash of its text, so a changed prompt is visible in every record
and manifest that used it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.exemplars import Exemplar, ExemplarPool, as_turns, load_pool
from pipeline.fingerprint import digest
from pipeline.llm.types import Message, sample_seed
from pipeline.tinystories.recipe import STORY_FEATURES, TinyStoriesGenerateConfig
from pipeline.tinystories.vocab import Vocabulary

FEATURE_TEXT = {
    "Dialogue": "someone in the story says something out loud, written in quotes",
    "BadEnding": "the story ends in a sad or bad way",
    "MoralValue": "the story teaches a lesson",
    "Twist": "something surprising happens that nobody expected",
    "Foreshadowing": "a small detail early in the story matters again at the end",
    "Conflict": "the characters face a problem or want different things",
}

STORY_TEMPLATE = (
    # Naming the words up front, and asking for short stories, helped SmolLM2-135M:
    # on 14 prompts, all three words used 3 -> 4 times, stories finished 10 -> 14.
    "Words to use: \"{verb}\", \"{noun}\", \"{adjective}\".\n"
    "Write a short, simple story (about 100 words) for a 3-year-old child. The story must use all "
    "three words: the verb \"{verb}\", the noun \"{noun}\" and the adjective \"{adjective}\".{features} "
    "Use only very simple words. Write only the story, with no title."
)
FEATURES_SENTENCE = " In the story, {items}."
# TinyStories-Instruct also asks for a given sentence somewhere in the story (generate.sentence_fraction).
SENTENCE_TEXT = ' The story must contain this exact sentence: "{sentence}"'

SUMMARY_TEMPLATE = (
    "Here is a story for small children:\n\n{story}\n\n"
    "Summarize the story in one short sentence with simple words. Write only the sentence."
)

STORY_TEMPLATE_ID = "tinystories.story@" + digest([STORY_TEMPLATE, FEATURES_SENTENCE, FEATURE_TEXT])[:8]
SUMMARY_TEMPLATE_ID = "tinystories.summary@" + digest(SUMMARY_TEMPLATE)[:8]
SENTENCE_TEMPLATE_ID = "tinystories.sentence@" + digest(SENTENCE_TEXT)[:8]  # listed where a recipe asks for it
TEMPLATES = {
    STORY_TEMPLATE_ID: STORY_TEMPLATE + "\nfeatures: " + FEATURES_SENTENCE,
    SUMMARY_TEMPLATE_ID: SUMMARY_TEMPLATE,
}


@dataclass(frozen=True, slots=True)
class StorySpec:
    """Everything random about one story, fixed by (recipe seed, index)."""

    index: int
    verb: str
    noun: str
    adjective: str
    features: tuple[str, ...]
    want_summary: bool
    seed: int  # the LLM sampling seed
    sentence: str | None = None  # a sentence the story must contain (TinyStories-Instruct)

    @property
    def words(self) -> tuple[str, str, str]:
        return (self.verb, self.noun, self.adjective)


def plan_story(index: int, seed: int, cfg: TinyStoriesGenerateConfig, vocab: Vocabulary) -> StorySpec:
    # One generator per story (not one for the whole run) makes story i the
    # same whatever the count or the batch size: resuming never reshuffles.
    rng = random.Random(f"tinystories:{seed}:{index}")
    verb, noun, adjective = rng.choice(vocab.verbs), rng.choice(vocab.nouns), rng.choice(vocab.adjectives)
    pool = sorted(set(cfg.features), key=STORY_FEATURES.index)
    k = rng.randint(cfg.min_features, cfg.max_features)
    features = tuple(sorted(rng.sample(pool, k), key=STORY_FEATURES.index))
    want_summary = rng.random() < cfg.summary_fraction
    sentence = None
    if cfg.sentence_fraction:  # a draw of its own, so asking for sentences changes no story's words or features
        pick = random.Random(f"tinystories-sentence:{seed}:{index}")
        if pick.random() < cfg.sentence_fraction:
            sentence = pick.choice(load_sentences(cfg.sentences_path))
    return StorySpec(index, verb, noun, adjective, features, want_summary, sample_seed(seed, index), sentence)


@cache
def load_sentences(path: Path) -> tuple[str, ...]:
    """The sentences a story may be asked to contain: one per line, ``#`` comments and blanks skipped."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def plan_stories(start: int, stop: int, seed: int, cfg: TinyStoriesGenerateConfig, vocab: Vocabulary) -> list[StorySpec]:
    return [plan_story(i, seed, cfg, vocab) for i in range(start, stop)]


def story_prompt(spec: StorySpec) -> str:
    features = ""
    if spec.features:
        items = [FEATURE_TEXT[f] for f in spec.features]
        joined = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        features = FEATURES_SENTENCE.format(items=joined)
    if spec.sentence:
        features += SENTENCE_TEXT.format(sentence=spec.sentence)
    return STORY_TEMPLATE.format(verb=spec.verb, noun=spec.noun, adjective=spec.adjective, features=features)


def story_messages(spec: StorySpec, exemplars: Sequence[Exemplar]) -> tuple[Message, ...]:
    """The chat for one story: each exemplar as a request in the same template and its story as the
    reply, then the real request (its last turn is ``story_prompt(spec)``)."""
    return (*as_turns(exemplars, _exemplar_turn), Message("user", story_prompt(spec)))


def _exemplar_turn(e: Exemplar) -> tuple[str, str]:
    verb, noun, adjective = e.fields["words"]
    features = tuple(sorted(e.fields["features"], key=STORY_FEATURES.index))
    return story_prompt(StorySpec(-1, verb, noun, adjective, features, False, 0)), e.fields["story"]


def story_exemplars(path: Path) -> ExemplarPool:
    return load_pool(path, "stories", ("words", "features", "story"))


def summary_prompt(story: str) -> str:
    return SUMMARY_TEMPLATE.format(story=story)


def instruction_text(record: dict[str, Any]) -> str:
    """A story in TinyStories-Instruct's format: what was asked (the features, the words, the sentence and
    the summary, each where there is one), then the story; the field names are the released dataset's."""
    lines = [f"Features: {', '.join(record['features'])}"] if record.get("features") else []
    lines.append(f"Words: {', '.join(record['words'])}")
    if record.get("sentence"):
        lines.append(f"Random sentence: {record['sentence']}")
    if record.get("summary"):
        lines.append(f"Summary: {record['summary']}")
    return "\n".join([*lines, "Story:", record["story"]])
