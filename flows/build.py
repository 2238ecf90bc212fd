"""The one build flow: any corpus kind's build, each step a Prefect task, each batch a task run.

``pipeline.kinds.run_build`` knows the order of a kind's steps; this module
only says how each runs under Prefect (:class:`PrefectRunner`). Every kind's
flow is this flow under the kind's name (``flow_for("tinygsm")`` is the
``tinygsm`` flow), so deployments stay ``<kind flow>/<recipe name>``.

    from flows.build import flow_for
    flow_for("tinystories")(recipe_path="flows/recipes/tinystories-demo.toml")
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Flow, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run

from flows import interrupt
from flows.artifacts import Progress, publish_build_artifacts
from flows.common import open_build
from flows.runners import task_runner
from pipeline.errors import RecipeError
from pipeline.kinds import USAGE, BatchStats, batch_line, get_kind, kind_names, run_build
from pipeline.recipe import BaseRecipe

T = TypeVar("T")


def _task(fn: Callable[..., T], name: str, run_name: str | None = None) -> Any:
    # tinyforge's own fingerprints and response cache decide what to skip, so Prefect's result
    # cache is off: it would only hash large inputs for nothing.
    return task(fn, name=name, task_run_name=run_name, cache_policy=NO_CACHE, persist_result=False)


def _run_batch(fn: Callable[[int], BatchStats], batch: int) -> BatchStats:
    return fn(batch)


class PrefectRunner:
    """Each step a task; the batches of a stage submitted to the flow's task runner at once.

    Batches are the unit of distribution: the default runner runs them one at a time in this process
    (the embedded engine already uses every core for one batch), a Dask runner spreads them over its
    workers. A stage's progress is an artifact in the UI."""

    def __init__(self, recipe: BaseRecipe):
        self.recipe = recipe

    def stage(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        interrupt.check()
        return _task(fn, name)(*args)

    def batches(self, stage: str, label: str, n: int, items: int, fn: Callable[[int], BatchStats],
                run_name: str) -> dict[str, int]:
        progress = Progress(self.recipe.name, stage, items)
        batch_task = _task(_run_batch, f"{stage}-batch", run_name)
        usage = dict.fromkeys(USAGE, 0)
        futures = [batch_task.submit(fn, b) for b in range(n)]
        for finished, future in enumerate(as_completed(futures), start=1):
            interrupt.check()
            s = future.result()
            for k in usage:
                usage[k] += s.get(k, 0)
            self.log(batch_line(label, s, finished, n, progress.advance(s["items"])))
        return usage

    def log(self, message: str) -> None:
        get_run_logger().info("%s", message)


@flow(name="tinyforge-build", task_runner=task_runner(), log_prints=True)
def build_corpus(recipe_path: str, output_root: str | None = None, name: str | None = None,
                 seed: int | None = None, dated: bool = False, wait_for_lock: float = 0.0) -> dict[str, Any]:
    """Build a corpus from a recipe file; returns where the dataset is and what it cost.

    Parameters besides the recipe override it for this run (see ``flows.common.open_build``).
    """
    with open_build(recipe_path, output_root=output_root, name=name, seed=seed, dated=dated,
                    wait_for_lock=wait_for_lock) as recipe:
        _check_flow(recipe)
        outcome = run_build(recipe, PrefectRunner(recipe))
        publish_build_artifacts(recipe.name, outcome.published)
        return outcome.summary()


def _check_flow(recipe: BaseRecipe) -> None:
    """A kind's flow builds that kind's recipes only (a UI user may point a deployment at another file)."""
    running = flow_run.get_flow_name()
    flows = {get_kind(k).flow_name: k for k in kind_names()}
    if running in flows and flows[running] != recipe.kind:
        raise RecipeError(f"the {running} flow builds {flows[running]} recipes; this is a {recipe.kind} recipe")


_FLOWS: dict[str, Flow[..., dict[str, Any]]] = {}


def flow_for(kind: str) -> Flow[..., dict[str, Any]]:
    """The flow that builds ``kind``: ``build_corpus`` under the kind's flow name (deployments are
    ``<flow name>/<recipe>``), as its own function ``<kind>_flow`` of this module, so that the entrypoint a
    deployment records (``flows/build.py:tinygsm_flow``) loads this kind's flow in a served run."""
    k = get_kind(kind)
    attr = f"{k.name}_flow"
    if attr not in _FLOWS:
        base = build_corpus.fn
        fn = types.FunctionType(base.__code__, base.__globals__, attr, base.__defaults__, base.__closure__)
        fn.__qualname__, fn.__module__, fn.__annotations__ = attr, __name__, base.__annotations__
        fn.__doc__ = f"The {k.name} kind: {k.description}.\n\n{base.__doc__}"
        _FLOWS[attr] = flow(fn, name=k.flow_name, task_runner=task_runner(), log_prints=True)
    return _FLOWS[attr]


def __getattr__(name: str) -> Flow[..., dict[str, Any]]:
    # `flows.build.tinygsm_flow` and the like: what a deployment's entrypoint names
    for kind in kind_names():
        if name == f"{kind}_flow":
            return flow_for(kind)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
