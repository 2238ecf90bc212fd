"""Corpus kinds as declared objects, found through one registry, built by one entry point.

A :class:`Kind` says everything the rest of tinyforge needs to know about a
corpus kind: its recipe model, its shard schema, its main text field, how its
records are produced (``produce``: batched generation, or evolution rounds)
and the record stages that follow, in order, before the shared publish step.

:func:`run_build` runs a kind's whole build in plain Python through a
:class:`Runner`. The default :class:`InProcess` runner calls every step
directly (what tests and notebooks use); the Prefect flow in ``flows/build.py``
passes a runner that makes each stage a task and each batch a task run. The
steps themselves are the same functions either way: fingerprinted, atomic,
resumable after a kill.

Kinds are found by name (:mod:`pipeline.registry`, whose names this module
re-exports) through the ``tinyforge.kinds`` entry point group: tinyforge's own
four and any installed distribution's, each imported on first use, so a fresh
process (the command, a Dask worker) knows every installed kind without being
told. ``register(kind)`` adds one for this process alone (a test, a notebook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import polars as pl

from pipeline.batches import BatchedStage, BatchStats, Models, Summarize, Work, batch_ranges
from pipeline.publish import Published
from pipeline.recipe import BaseRecipe
from pipeline.records import rejected_frame
from pipeline.registry import ENTRY_POINTS, get_kind, installed, kind_names, register, unregister  # noqa: F401
from pipeline.stages import StageResult
from pipeline.stages.base import KindContext, Stage
from pipeline.stages.publish import READS as PUBLISH_READS
from pipeline.target import GENERATE, Growth  # noqa: F401  (the kinds import them from here)

if TYPE_CHECKING:
    from pipeline.judge import Rubric

T = TypeVar("T")
R = TypeVar("R", bound=BaseRecipe)
USAGE = ("model_calls", "cache_hits", "completion_tokens")


class Runner(Protocol):
    """How a build's steps run: in this process, or as Prefect tasks."""

    def stage(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one step (a stage, a gather, the publish) and return what it returns."""

    def batches(self, stage: str, label: str, n: int, items: int, fn: Callable[[int], BatchStats],
                run_name: str) -> dict[str, int]:
        """Run ``fn(0..n-1)``, the batches of ``stage`` (``items`` records in all), and sum their usage.

        ``run_name`` names one batch's run, with ``{batch}`` in it (``generate-batch-{batch}``)."""

    def log(self, message: str) -> None: ...


# a target decides how many candidates the rounds write (their `count` is fingerprinted), and the target
# stage reads it: the generate stage leaves these out of its fingerprint
TARGET_KEYS = ("generate.target", "generate.max_candidates")


@dataclass(frozen=True)
class MixFields:
    """How a mix reads a kind's records (docs/mix.md): the instruction and the response columns, and the
    training text, the one the kind's own publish tokenizes: the response alone (``"response"``), both
    joined by a blank line (``"both"``), or a column of the record's own (``text_column``, a mix's)."""

    instruction: str
    response: str
    text: Literal["response", "both"] = "both"
    text_column: str | None = None


@dataclass(frozen=True)
class Produced:
    """What a kind's production made: its stages (the last one feeds the record stages) and this run's usage."""

    stages: list[StageResult]
    usage: dict[str, int]


@dataclass(frozen=True)
class Kind(Generic[R]):
    name: str  # the recipe's `kind`
    recipe: type[R]
    flow_name: str  # the Prefect flow (deployments are `<flow_name>/<recipe name>`)
    schema_id: str | Path  # the shard contract: schemas/<schema_id>.json, or a kind's own file
    text_field: str  # what dedup compares and rejections quote
    produce: Callable[[R, Runner], Produced]
    stages: tuple[Stage[R], ...]
    publish: Callable[[R, list[StageResult], KindContext], tuple[Published, bool]]
    # `tinyforge verify --execute`: the code a published record's answer came from (None: that record has
    # none), or None for a kind whose records carry no code
    solution_code: Callable[[dict[str, Any]], str | None] | None = None
    description: str = ""
    rubric: Rubric | None = None  # what the judge stage grades (its rubric.py); None: the kind has no judge
    growth: Growth | None = None  # how a target row count grows the build (GENERATE...); None: no target
    mix_fields: MixFields | None = None  # how a mix reads its datasets; None: a mix cannot
    # the candidates a build's first production stage really had (fewer than `count`: the input ran out)
    available: Callable[[list[StageResult]], int | None] = lambda stages: None
    # what of the recipe production's stages read ({"generate": ("seed", "generate", ...)}), and the parts
    # of a recipe no fingerprint covers because they cannot change a record ({"verify.workers": why})
    produce_reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unfingerprinted: Mapping[str, str] = field(default_factory=dict)

    def context(self) -> KindContext:
        """What the kind's stages are told about it (they never look it up)."""
        return KindContext(self.name, self.text_field, self.rubric, self.schema_id)

    def reads(self) -> dict[str, tuple[str, ...]]:
        """Every step's declared reads, by step: production, the record stages, publish."""
        target = {"target": (self.growth.target,)} if self.growth is not None else {}
        return {**self.produce_reads, **{s.name: s.reads for s in self.stages}, **target, "publish": PUBLISH_READS}


@dataclass
class BuildOutcome:
    recipe: BaseRecipe
    stages: list[StageResult]
    published: Published
    reused: bool
    usage: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What a flow run returns and `tinyforge build` prints: where the dataset is and what it cost."""
        return {
            "build_id": self.recipe.build_id,
            "dataset": str(self.published.path),
            "report": str(self.published.path / "report.md"),
            "splits": {k: v["rows"] for k, v in self.published.manifest["splits"].items()},
            "run_usage": self.usage,
            "notes": self.published.manifest.get("notes", []),  # what the card says besides the description
            "stages": {s.name: "reused" if s.skipped else "ran" for s in self.stages}
            | {"publish": "reused" if self.reused else "ran"},
        }


# --- running a build --------------------------------------------------------------------------


class InProcess:
    """Every step called directly, batches one after another; progress printed."""

    def __init__(self, echo: Callable[[str], None] = print):
        self.echo = echo

    def stage(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def batches(self, stage: str, label: str, n: int, items: int, fn: Callable[[int], BatchStats],
                run_name: str) -> dict[str, int]:
        usage = dict.fromkeys(USAGE, 0)
        for b in range(n):
            s = fn(b)
            for k in usage:
                usage[k] += s.get(k, 0)
            self.echo(batch_line(label, s, b + 1, n))
        return usage

    def log(self, message: str) -> None:
        self.echo(message)


def batch_line(label: str, s: BatchStats, finished: int, total: int, pct: float | None = None) -> str:
    rate = s["completion_tokens"] / s["seconds"] if s["seconds"] else 0.0
    done = f" ({pct:.0f}% done)" if pct is not None else ""
    return (f"{label}: batch {s['batch']} {'reused' if s['skipped'] else 'done'} ({finished}/{total}), "
            f"{s['model_calls']} model calls, {s['cache_hits']} cache hits, {rate:.0f} tok/s{done}")


def _produce_and_stages(kind: Kind[Any], recipe: BaseRecipe, runner: Runner) -> tuple[Produced, list[StageResult]]:
    """Production, then each record stage; the usage is production's and that of the record stages that
    ran a model this time (the judge)."""
    produced = kind.produce(recipe, runner)
    stages, usage = list(produced.stages), dict(produced.usage)
    for stage in kind.stages:
        stages.append(result := runner.stage(stage.name, stage.run, recipe, stages[-1], kind.context()))
        if not result.skipped:
            usage = {k: usage[k] + result.stats.get("usage", {}).get(k, 0) for k in usage}
    return Produced(produced.stages, usage), stages


def _toward_target(kind: Kind[Any], recipe: BaseRecipe, runner: Runner, target: int,
                   ) -> tuple[Produced, list[StageResult]]:
    """Rounds of candidates until ``target`` records survive the stages or the budget is spent
    (``pipeline.target``); then the target stage keeps the first ``target``."""
    from pipeline.stages.target import target_stage
    from pipeline.target import Budget, next_count

    grow = kind.growth
    assert grow is not None
    budget = Budget(target, grow.get(recipe, grow.budget) or 20 * target, grow.get(recipe, grow.step))
    usage, count, rounds, ran_out = dict.fromkeys(USAGE, 0), grow.get(recipe, grow.count) or target, 0, False
    while True:
        rounds += 1
        this = grow.with_count(recipe, count)
        produced, stages = _produce_and_stages(kind, this, runner)
        usage = {k: usage[k] + produced.usage[k] for k in usage}
        survivors = stages[-1].rows["records"]
        if (available := kind.available(stages)) is not None and available < count:  # the input ran out
            budget = Budget(target, available, budget.batch_size)
            this, count, ran_out = grow.with_count(recipe, available), available, True
        after = next_count(count, survivors, budget)
        runner.log(f"target: round {rounds}: {survivors} of {target} records from {count} candidates"
                   + (f"; next round: {after} candidates in all" if after is not None else ""))
        if after is None:
            break
        count = after
    stages.append(runner.stage("target", target_stage, this, stages[-1], kind.context(), target, rounds,
                               budget.max_candidates, grow, ran_out))
    runner.log(f"target: {stages[-1].stats['sentence']}")
    return Produced(produced.stages, usage), stages


def run_build(recipe: BaseRecipe, runner: Runner | None = None) -> BuildOutcome:
    """Build ``recipe`` end to end: produce, each record stage, publish. Stages already done are reused.
    With a target (the kind's ``growth``: ``generate.target``, ``evolve.target``), produce and the record
    stages run in rounds until the target is met."""
    runner = runner or InProcess()
    kind = get_kind(recipe.kind)
    target = kind.growth.get(recipe, kind.growth.target) if kind.growth is not None else None
    if target is not None:
        produced, stages = _toward_target(kind, recipe, runner, target)
    else:
        produced, stages = _produce_and_stages(kind, recipe, runner)
    for s in stages:
        runner.log(f"{s.name}: {'reused' if s.skipped else 'ran'}, {s.rows['records']} kept, "
                   f"{s.rows.get('rejected', 0)} rejected")
    published, reused = runner.stage("publish", kind.publish, recipe, stages, kind.context())
    runner.log(f"publish: {'reused' if reused else 'wrote'} {published.path}")
    return BuildOutcome(recipe, stages, published, reused, produced.usage)


# --- batched stages: generation, and evolution rounds --------------------------------------


def run_batched(runner: Runner, stage: BatchedStage, work: Work, *, label: str, gather: str,
                stats: dict[str, Any] | Summarize | None = None) -> tuple[StageResult, dict[str, int]]:
    """A batched stage through ``runner``: its batches (unless the stage is done), then its gather task
    ``gather``. Returns the stage and what this run spent on it."""
    usage = dict.fromkeys(USAGE, 0)
    if stage.done() is None:
        usage = runner.batches(stage.name, label, len(stage.ranges), stage.items, partial(stage.run_batch, work=work),
                               f"{stage.name}-batch-{{batch}}")
    return runner.stage(gather, _gather, stage, stats), usage


def _gather(stage: BatchedStage, stats: dict[str, Any] | Summarize | None) -> StageResult:
    return stage.gather(stats)


Records = list[dict[str, Any]]


@dataclass(frozen=True)
class BatchedGeneration(Generic[R]):
    """`generate` as batches of ``recipe.generate.batch_size``, then one gather: how tinystories and tinygsm
    produce their records. ``work(recipe, start, stop, models)`` returns the (kept, rejected) records of
    items ``start..stop``."""

    fingerprint: Callable[[R], str]
    work: Callable[[R, int, int, Models], tuple[Records, Records]]

    def stage(self, recipe: R) -> BatchedStage:
        g = recipe.generate  # type: ignore[attr-defined]  # every generating recipe has this section
        return BatchedStage(recipe.build_dir, recipe.output_root, "generate", self.fingerprint(recipe),
                            batch_ranges(g.count, g.batch_size))

    def _tables(self, recipe: R, start: int, stop: int, models: Models) -> dict[str, pl.DataFrame]:
        records, rejected = self.work(recipe, start, stop, models)
        return {"records": pl.DataFrame(records, infer_schema_length=None), "rejected": rejected_frame(rejected)}

    def __call__(self, recipe: R, runner: Runner) -> Produced:
        result, usage = run_batched(runner, self.stage(recipe), partial(self._tables, recipe), label="generate",
                                    gather="gather-generate")
        return Produced([result], usage)
