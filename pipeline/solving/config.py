"""What a recipe says about solving math: the checks a problem must pass, the vote and the sandbox
(``[verify]``), and calibration on problems with known answers (``[calibrate]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config import FileWhenEnabled, Section, check_word_range
from pipeline.paths import SEEDS_FILE


class QuestionFilterConfig(Section):
    min_words: int = Field(12, ge=1)
    max_words: int = Field(200, ge=1)
    min_numbers: int = Field(2, ge=0, description="numbers a problem must state")
    require_question: bool = Field(True, description="the problem must ask something (end with '?')")

    @model_validator(mode="after")
    def _bounds(self) -> QuestionFilterConfig:
        check_word_range(self.min_words, self.max_words)
        return self


class VerifyConfig(Section):
    min_agreement: float = Field(
        0.5, gt=0.0, le=1.0, description="share of the k samples that must reach the majority answer"
    )
    votes: Literal["distinct", "samples"] = Field(
        "distinct", description="what a vote is: a distinct program (after normalising names, spacing and "
                                "comments) or every sample")
    min_votes: int = Field(1, ge=1, le=64, description="distinct programs that must reach the majority answer")
    timeout_s: float = Field(2.0, gt=0.0, le=60.0, description="CPU seconds a program may use, all its processes "
                                                                 "together (a sleeping one stops at 2x + 1 s of wall clock)")
    memory_mb: int = Field(512, ge=64, le=16384, description="memory a program may use: per process, and all its "
                                                              "processes together where the host has a memory cgroup")
    workers: int = Field(2, ge=1, le=256)


class CalibrateConfig(Section):
    """Problems with known answers, solved by the build's own solver: how often its verification is right."""

    enabled: bool = True
    path: FileWhenEnabled = Field(SEEDS_FILE, description="JSONL with a question and a numeric or GSM8K-style answer")
    question_field: str = "question"
    answer_field: str = "answer"
    limit: int | None = Field(120, gt=0, description="calibrate on the first N problems with an answer")
