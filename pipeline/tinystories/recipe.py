"""The tinystories recipe: ``[generate]`` (words, features, exemplars, sentences) and ``[filter]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.config import ExemplarsFile, InputPath, Section, check_word_range
from pipeline.paths import STORY_EXEMPLARS_FILE, STORY_SENTENCES_FILE, VOCAB_DIR
from pipeline.recipe import BaseRecipe
from pipeline.target import CandidateBudget, Target, check_budget


STORY_FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
Feature = Literal["Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict"]
VOCAB_FILES = ("nouns.txt", "verbs.txt", "adjectives.txt")


class TinyStoriesGenerateConfig(Section):
    count: int = Field(..., gt=0, le=10_000_000, description="stories to generate")
    batch_size: int = Field(16, gt=0, le=100_000, description="stories per Prefect task")
    vocab_dir: Annotated[Path, InputPath(what="vocabulary file", absent="missing", folder_files=VOCAB_FILES)] = \
        Field(VOCAB_DIR, description="folder with nouns.txt, verbs.txt, adjectives.txt")
    features: tuple[Feature, ...] = STORY_FEATURES
    min_features: int = Field(0, ge=0, le=len(STORY_FEATURES))
    max_features: int = Field(3, ge=0, le=len(STORY_FEATURES))
    summary_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of stories that also get a one-sentence summary"
    )
    target: Target = None
    max_candidates: CandidateBudget = None
    exemplars: int = Field(2, ge=0, le=8, description="example stories shown as earlier chat turns (0: none)")
    sentence_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of stories asked to contain a "
                                     "given sentence (TinyStories-Instruct); the filter checks that it is there")
    sentences_path: Annotated[Path, InputPath(when="sentence_fraction", lines=True)] = Field(
        STORY_SENTENCES_FILE, description="the sentences drawn from: one per line, # comments")
    exemplars_path: ExemplarsFile = Field(STORY_EXEMPLARS_FILE, description="JSONL of example stories (id, words, "
                                          "features, story)")

    @model_validator(mode="after")
    def _feature_bounds(self) -> TinyStoriesGenerateConfig:
        check_budget(self.count, self.target, self.max_candidates)
        if self.min_features > self.max_features:
            raise ValueError(
                f"min_features ({self.min_features}) is larger than max_features ({self.max_features})"
            )
        if self.max_features > len(set(self.features)):
            raise ValueError(
                f"max_features ({self.max_features}) is larger than the {len(set(self.features))} features listed"
            )
        return self


class StoryFilterConfig(Section):
    min_words: int = Field(40, ge=1)
    max_words: int = Field(600, ge=1)
    min_required_words: int = Field(
        3, ge=0, le=3, description="how many of the prompt's verb, noun and adjective must appear (0: no check)"
    )
    repeated_ngram_size: int = Field(3, ge=1, le=10)
    max_repeated_ngram_fraction: float = Field(0.25, ge=0.0, le=1.0)
    max_oov_fraction: float = Field(0.2, ge=0.0, le=1.0)
    max_non_ascii_fraction: float = Field(0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> StoryFilterConfig:
        check_word_range(self.min_words, self.max_words)
        return self


class TinyStoriesRecipe(BaseRecipe):
    kind: Literal["tinystories"] = "tinystories"
    generate: TinyStoriesGenerateConfig
    filter: StoryFilterConfig = StoryFilterConfig()
