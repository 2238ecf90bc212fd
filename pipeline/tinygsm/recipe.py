"""The tinygsm recipe: seed problems, ``[generate]`` (rewrites, k solutions), the question filter, the
vote (``[verify]``) and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.config import ExemplarsFile, InputPath, Section
from pipeline.llm.config import SamplingConfig
from pipeline.paths import REWRITE_EXEMPLARS_FILE, SEEDS_FILE
from pipeline.recipe import ProspectingRecipe
from pipeline.solving.config import CalibrateConfig, QuestionFilterConfig, VerifyConfig
from pipeline.target import CandidateBudget, Target, check_budget


class SeedsConfig(Section):
    """Seed problems: the shipped pool, or the user's own JSONL (e.g. GSM8K train)."""

    path: Annotated[Path, InputPath(what="seed file")] = Field(SEEDS_FILE, description="JSONL file, one seed "
                                                                 "problem per line")
    question_field: str = "question"
    answer_field: str | None = Field("answer", description='numeric, or GSM8K style "... #### 42"; optional')
    solution_field: str | None = Field("solution", description="a worked Python solution, used as the example")
    limit: int | None = Field(None, gt=0, description="use only the first N seeds")


class TinyGSMGenerateConfig(Section):
    count: int = Field(..., gt=0, le=10_000_000, description="problems to write (before verification)")
    batch_size: int = Field(8, gt=0, le=100_000, description="problems per Prefect task")
    samples: int = Field(4, ge=1, le=64, description="independent solutions sampled per problem (k)")
    target: Target = None
    max_candidates: CandidateBudget = None
    exemplars: int = Field(2, ge=0, le=8, description="example rewrites (problem -> new problem) shown as earlier "
                           "chat turns, drawn per problem (0: none)")
    exemplars_path: ExemplarsFile = Field(REWRITE_EXEMPLARS_FILE, description="JSONL of example rewrites (id, "
                                          "question, rewrite, solution, answer)")

    @model_validator(mode="after")
    def _budget(self) -> TinyGSMGenerateConfig:
        check_budget(self.count, self.target, self.max_candidates)
        return self


class TinyGSMRecipe(ProspectingRecipe):
    kind: Literal["tinygsm"] = "tinygsm"
    generate: TinyGSMGenerateConfig
    seeds: SeedsConfig = SeedsConfig()
    sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=160, repeat_penalty=1.1)
    solution_sampling: SamplingConfig = SamplingConfig(temperature=0.5, max_tokens=320, repeat_penalty=1.05)
    filter: QuestionFilterConfig = QuestionFilterConfig()
    verify: VerifyConfig = VerifyConfig()
    calibrate: CalibrateConfig = CalibrateConfig()
