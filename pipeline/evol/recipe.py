"""The evol_instruct recipe: the seeds, the rounds (``[evolve]``), the responses and, for math pools,
the solvability gate (``[math]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config import ExemplarsFile, InputPath, Section, check_word_range
from pipeline.llm.config import (BackendConfig, LlamaCppBackendConfig, OpenAIBackendConfig, SamplingConfig,
                                 VLLMBackendConfig, default_backend_kind)
from pipeline.paths import EVOLUTION_EXEMPLARS_FILE, INSTRUCTIONS_FILE
from pipeline.recipe import ProspectingRecipe
from pipeline.solving.config import CalibrateConfig, QuestionFilterConfig, VerifyConfig


EvolOperation = Literal["add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth"]


EVOL_OPERATIONS: tuple[EvolOperation, ...] = (
    "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth")


class EvolSeedsConfig(Section):
    """Where the instructions to evolve come from."""

    path: Annotated[Path, InputPath(what="seed file or published dataset", dataset=True)] = Field(
        INSTRUCTIONS_FILE, description="a JSONL file, or an earlier build's dataset/ folder")
    field: str | None = Field(None, description="the text field (default: instruction, question or prompt)")
    math: bool | None = Field(
        None, description="math problems: every evolution must stay solvable (default: a tinygsm dataset, "
        "or seeds that all carry an answer)")
    limit: int | None = Field(None, gt=0, description="use only the first N seeds")


class EvolveConfig(Section):
    rounds: int = Field(4, ge=1, le=20, description="each round evolves the survivors of the one before")
    operations: tuple[EvolOperation, ...] = Field(
        EVOL_OPERATIONS, min_length=1, description="the operation mix; list one twice to use it twice as often")
    assignment: Literal["round_robin", "random"] = Field(
        "round_robin", description="round_robin: an instruction's operation shifts every round; random: drawn "
        "from the mix")
    batch_size: int = Field(32, gt=0, le=100_000, description="instructions per Prefect task")
    target: int | None = Field(None, gt=0, le=10_000_000, description="publish exactly this many evolved "
                               "instructions: more seeds (seeds.limit) each round of the build until they survive")
    max_seeds: int | None = Field(None, gt=0, le=100_000_000, description="the budget of a target: seeds "
                                  "evolved in all rounds at most (default 20 x target, or the pool's size)")
    retry_failed: bool = Field(True, description="a failed evolution's parent goes back into the next round's pool")
    judge: bool = Field(False, description="also ask the evolver whether child and parent are Equal (paper's judge)")
    exemplars: int = Field(2, ge=0, le=8, description="example evolutions shown as earlier chat turns (0: none)")
    exemplars_path: ExemplarsFile = Field(EVOLUTION_EXEMPLARS_FILE, description="JSONL of example evolutions (id, "
                                          "operation, math, parent, child)")
    min_words: int = Field(4, ge=1)
    max_words: int = Field(200, ge=1)
    max_growth: float = Field(3.0, gt=1.0, le=100.0, description="in-depth: child words / parent words at most")
    max_similarity: float = Field(
        0.9, gt=0.0, le=1.0, description="word-set Jaccard with the parent at or above which nothing was gained")
    max_template_overlap: float = Field(
        0.3, ge=0.0, le=1.0, description="share of new 4-grams taken from the evolving prompt above which "
        "the model copied the prompt")

    @model_validator(mode="after")
    def _bounds(self) -> EvolveConfig:
        if self.max_seeds is not None and self.target is None:
            raise ValueError("max_seeds is the budget of a target: set target too")
        check_word_range(self.min_words, self.max_words)
        return self


class EvolResponseConfig(Section):
    min_words: int = Field(3, ge=1, description="a shorter response is degenerate")
    allow_truncated: bool = Field(False, description="keep responses cut off at max_tokens")


class EvolMathConfig(Section):
    """The solvability gate for math pools: k sampled solutions must run and agree."""

    samples: int = Field(4, ge=1, le=64)
    solution_sampling: SamplingConfig = SamplingConfig(temperature=0.5, max_tokens=320, repeat_penalty=1.05)
    filter: QuestionFilterConfig = QuestionFilterConfig()
    verify: VerifyConfig = VerifyConfig()


class EvolInstructRecipe(ProspectingRecipe):
    kind: Literal["evol_instruct"] = "evol_instruct"
    seeds: EvolSeedsConfig = EvolSeedsConfig()
    evolve: EvolveConfig = EvolveConfig()
    sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=200, repeat_penalty=1.1)
    response_backend: BackendConfig | None = Field(None, description="default: the evolver's backend")
    response_sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=300, repeat_penalty=1.15)
    response: EvolResponseConfig = EvolResponseConfig()
    math: EvolMathConfig = EvolMathConfig()
    calibrate: CalibrateConfig = Field(
        CalibrateConfig(), description="math pools: the solvability gate's solver on problems with known answers")

    _default_response_kind = field_validator("response_backend", mode="before")(staticmethod(default_backend_kind))

    @property
    def responder(self) -> LlamaCppBackendConfig | OpenAIBackendConfig | VLLMBackendConfig:
        return self.response_backend or self.backend
