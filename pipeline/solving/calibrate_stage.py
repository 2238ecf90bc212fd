"""The ``calibrate`` stage every math kind runs: its own solver on problems whose answers are known.

TinyGSM verifies generated problems, the evolution flow gates evolved ones;
both solve with a :class:`SolverSetup` (model, sampling, k, vote), and both
calibrate that setup here, in batches that are cached and resume like any
model call. The stage's tables are one row per gold problem (``records``)
and one verifier row per executed sample (``samples``); its stats are the
figures of :func:`pipeline.solving.calibrate.summarize`, the breakdowns by
topic, program steps and learning percentage, and what it spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import polars as pl

from pipeline.batches import BatchedStage, Models, batch_ranges
from pipeline.fingerprint import declared_fingerprint
from pipeline.kinds import Runner, run_batched
from pipeline.llm import sampling_params
from pipeline.llm.types import derive_seed
from pipeline.difficulty.config import DifficultyConfig
from pipeline.llm.config import BackendConfig, SamplingConfig
from pipeline.recipe import BaseRecipe
from pipeline.solving.config import CalibrateConfig, VerifyConfig
from pipeline.records import rejected_frame
from pipeline.sandbox import Sandbox
from pipeline.solving.answers import same_answer
from pipeline.solving.calibrate import (
    SAMPLES_SCHEMA,
    GoldProblem,
    breakdown,
    difficulty_bands,
    load_gold,
    samples_frame,
    summarize,
    verifier_rows,
)
from pipeline.solving.prompt import SOLUTION_TEMPLATE_ID, shipped_example
from pipeline.solving.solver import Ask, Solver
from pipeline.solving.verify import Rule
from pipeline.stages import StageResult

VERSION = 1


@dataclass(frozen=True)
class SolverSetup:
    """What a math kind solves with: the model, its sampling, k and the vote."""

    backend: BackendConfig
    sampling: SamplingConfig
    samples: int  # k
    verify: VerifyConfig

    def solver(self, models: Models, sandbox: Sandbox) -> Solver:
        return Solver(models.open(self.backend), sampling_params(self.sampling), self.samples, Rule.of(self.verify),
                      sandbox)

    def sandbox(self) -> Sandbox:
        v = self.verify
        return Sandbox(workers=v.workers, timeout_s=v.timeout_s, memory_mb=v.memory_mb)


@dataclass(frozen=True)
class Calibration:
    """One recipe's calibrate stage. ``reads``: the parts of the recipe the setup comes from (its model,
    sampling, k, vote), with ``calibrate``, ``seed`` and (for the LP bands) ``difficulty``; ``omit``: parts of them that cannot change a
    result (sandbox workers)."""

    recipe: BaseRecipe
    config: CalibrateConfig
    setup: SolverSetup
    reads: tuple[str, ...]
    omit: tuple[str, ...] = ()
    batch_size: int = 24
    difficulty: DifficultyConfig | None = None  # learning percentage of the gold solutions, when on

    def __post_init__(self) -> None:
        if self.difficulty is not None and "difficulty" not in self.reads:
            raise ValueError("a calibration that reports learning percentage reads the difficulty section")

    def problems(self) -> list[GoldProblem]:
        c = self.config
        # the worked example the solver is shown would be its own answer key
        return load_gold(c.path, c.limit, c.question_field, c.answer_field, exclude=[shipped_example().question])

    def stage(self, problems: Sequence[GoldProblem]) -> BatchedStage:
        fp = declared_fingerprint(self.recipe, "calibrate", VERSION, self.reads, omit=self.omit,
                                  templates=[SOLUTION_TEMPLATE_ID])
        return BatchedStage(self.recipe.build_dir, self.recipe.output_root, "calibrate", fp,
                            batch_ranges(len(problems), self.batch_size), {"samples": SAMPLES_SCHEMA})

    def work(self, problems: Sequence[GoldProblem], start: int, stop: int, models: Models) -> dict[str, pl.DataFrame]:
        """Solve gold problems ``start..stop`` exactly as the build's own problems are solved and verified."""
        batch = problems[start:stop]
        asks = [Ask(p.question, shipped_example(), derive_seed(self.recipe.seed, "calibrate", p.id)) for p in batch]
        with self.setup.sandbox() as sandbox:
            solved = self.setup.solver(models, sandbox).solve(asks)
        rows = [row for p, (sampled, v) in zip(batch, solved, strict=True)
                for row in verifier_rows(p.id, p.question, sampled.solutions, v, "calibration", p.answer)]
        records = [{"id": p.id, "topic": p.topic, "steps": p.steps, "gold": p.answer, "answer": v.answer,
                    "votes": v.votes, "agreement": v.agreement, "kept": v.passed,
                    "correct": same_answer(v.answer, p.answer), "reason": v.reason,
                    "completion_tokens": s.completion_tokens}
                   for p, (s, v) in zip(batch, solved, strict=True)]
        return {"records": pl.DataFrame(records, infer_schema_length=None), "rejected": rejected_frame([]),
                "samples": samples_frame(rows)}

    def summary(self, problems: Sequence[GoldProblem], tables: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
        solved = tables["records"].to_dicts()
        v = self.setup.verify
        stats = summarize(tables["samples"].to_dicts(), self.setup.samples, v.min_agreement, v.votes == "distinct",
                          v.min_votes)
        stats |= {"by_topic": breakdown(solved, "topic"), "by_steps": breakdown(solved, "steps"),
                  "completion_tokens": sum(p["completion_tokens"] for p in solved)}
        if self.difficulty is not None and self.difficulty.enabled:
            stats["by_learning_percentage"] = difficulty_bands(solved, problems, self.difficulty, self.recipe.seed)
        return {"calibration": stats}

    def run(self, runner: Runner, log: Callable[[dict[str, Any]], str]) -> tuple[StageResult, dict[str, int]]:
        """Its batches (unless done) and the gather; logs ``log(figures)``. Returns the stage and its usage."""
        problems = self.problems() if self.config.enabled else []
        result, usage = run_batched(runner, self.stage(problems), partial(self.work, problems), label="calibrate",
                                    gather="gather-calibrate", stats=partial(self.summary, problems))
        runner.log(f"calibrate: {log(result.stats['calibration'])}")
        return result, usage
