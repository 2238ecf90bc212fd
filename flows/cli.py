"""The ``tinyforge`` command.

    tinyforge build RECIPE [--runner R] [--wait S]  run a build as a Prefect flow
    tinyforge score BUILD_DIR                       add difficulty scores to a build, re-publish
    tinyforge check RECIPE                          validate a recipe, print its build id
    tinyforge verify DATASET_DIR                    check a published dataset's checksums
    tinyforge serve [RECIPE|DIR ...]                every recipe as a Prefect deployment (UI, schedules)
    tinyforge builds [--output-root DIR]            the builds under an output root, with counts and status
    tinyforge inspect BUILD                         a build's report (or how far it got) in the terminal
    tinyforge compare BUILD BUILD ...               math builds' calibration side by side, per token
    tinyforge judge-eval [--set S] [--judge RECIPE] AUROC of the quality signals on the shipped labeled sets
    tinyforge doctor [CHECK ...]                    exercise every native path on this machine, one child each

A user's mistake (bad recipe, missing file) prints one line and exits 2;
a build that ran but produced nothing exits 1.

The front door of the orchestration layer, so it lives in ``flows/``: the
``pipeline`` library never imports it (or anything else of ``flows``).
Prefect is imported only by the commands that run flows. Also
``python -m flows.cli``.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flows import flow_for, interrupt
from flows.failure_log import FailureLog
from flows.runners import RUNNERS_HELP
from pipeline.errors import BuildFailed, IntegrityError, UserError

# Defaults that make Prefect work on a machine with no network and 2 slow cores;
# a user's own settings (environment or profile) still win.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
}


def _prefect_env() -> None:
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def cmd_build(args: argparse.Namespace) -> int:
    from pipeline.recipe import load_recipe

    recipe = load_recipe(args.recipe, output_root=args.output_root, name=args.name)  # fail fast, before Prefect
    _prefect_env()
    from flows.runners import check_scheduler, parse_runner, task_runner
    from flows.temporary_server import start_temporary_server
    from pipeline.lock import wait_until_free

    check_scheduler(parse_runner(args.runner))  # a bad --runner is one line, before a server starts
    # Our own temporary server (unless PREFECT_API_URL names one): it dies with this process however
    # this process dies, and it exists before a Dask cluster starts, so its workers can be told where it is.
    start_temporary_server()
    runner = task_runner(args.runner)
    # Checked here too so that a busy build is one line, not a failed flow run's traceback;
    # the flow takes the lock itself (runs started from the UI come through it alone).
    started = time.monotonic()
    interrupt.install()  # Ctrl-C stops the build even where Prefect's engine would swallow it (flows/interrupt.py)
    wait_until_free(recipe.build_dir, args.wait)
    print(f"tinyforge: building {recipe.build_id} into {recipe.build_dir}", flush=True)
    flow = flow_for(recipe.kind).with_options(task_runner=runner)
    with FailureLog(recipe.build_dir / "logs") as log:
        result = flow(recipe_path=str(Path(args.recipe).resolve()),
                      output_root=str(Path(args.output_root).resolve()) if args.output_root else None, name=args.name,
                      # The lock was free a moment ago; another waiter may still win the race for it, so the
                      # flow keeps what is left of --wait (at least a few seconds), not a fixed 5 s.
                      wait_for_lock=max(5.0, args.wait - (time.monotonic() - started)))
    if log.written:
        print(f"tinyforge: errors were logged during the build: {log.written}", flush=True)
    usage = result["run_usage"]
    splits = ", ".join(f"{k}: {v} rows" for k, v in result["splits"].items())
    print(
        f"\ntinyforge: build {result['build_id']} done ({splits}; "
        f"{usage['model_calls']} model calls, {usage['cache_hits']} cache hits this run)\n"
        f"  shards:   {result['dataset']}/data/\n"
        f"  manifest: {result['dataset']}/manifest.json\n"
        f"  report:   {result['report']}",
        flush=True,
    )
    for note in result.get("notes", []):
        print(f"  note:     {note}", flush=True)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Add difficulty scores to an existing build: every earlier stage is reused, then it re-publishes."""
    import json

    build = Path(args.build_dir)
    saved = build / "recipe.json"
    if not saved.is_file():
        raise UserError(f"{build}: no recipe.json (not a tinyforge build directory, or built before scores existed)")
    try:
        raw = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{saved}: unreadable ({exc}); build it again with its recipe") from None
    if not isinstance(raw, dict):
        raise UserError(f"{saved}: not a recipe (a JSON {type(raw).__name__}); build it again with its recipe")
    raw.setdefault("difficulty", {})["enabled"] = True
    scoring = build / "recipe.score.json"
    scoring.write_text(json.dumps(raw, indent=2))
    args.recipe, args.name = str(scoring), None
    args.output_root = args.output_root or None
    return cmd_build(args)


def cmd_check(args: argparse.Namespace) -> int:
    from pipeline.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    print(f"{args.recipe}: ok ({recipe.kind}, build id {recipe.build_id}, output {recipe.build_dir})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.shards import verify_dataset

    ds = verify_dataset(args.dataset)
    shards = sum(len(s["shards"]) for s in ds.manifest["splits"].values())
    rows = sum(ds.manifest["splits"][s]["rows"] for s in ds.splits)
    print(f"{ds.path}: ok ({shards} shards, {rows} rows, checksums match)")
    if args.execute:
        from pipeline.kinds import get_kind

        kind = ds.manifest.get("kind")
        try:
            solution_code = get_kind(kind).solution_code
        except KeyError:
            solution_code = None
        if solution_code is None:
            raise UserError(f"--execute re-runs solution code; {ds.path} is a {kind!r} dataset")
        import polars as pl

        from pipeline.sandbox import Sandbox
        from pipeline.solving import reexecute

        rows = pl.concat([pl.from_arrow(ds.table(s)) for s in ds.splits]).to_dicts()
        records = [r | {"code": code} for r in rows if (code := solution_code(r)) is not None]
        if not records:  # an evolved pool whose seeds were not math problems has prose responses
            raise UserError(f"--execute: {ds.path} has no records with solution code (no math records)")
        with Sandbox(workers=os.cpu_count() or 2) as sandbox:
            problems = reexecute(records, sandbox)
        for p in problems:
            print(f"  mismatch: {p}")
        if problems:
            raise IntegrityError(f"{len(problems)} of {len(records)} records do not re-execute to their answer")
        print(f"{ds.path}: all {len(records)} solutions re-executed in the sandbox to their stored answers")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.runners import ENV, parse_runner

    parse_runner(args.runner)  # a bad --runner fails here, not in every run
    os.environ[ENV] = args.runner or os.environ.get(ENV, "local")  # served runs are child processes
    _prefect_env()
    from flows.serve import serve_recipes

    serve_recipes(args.recipes, output_root=str(Path(args.output_root).resolve()) if args.output_root else None,
                  limit=args.limit)
    return 0


def cmd_builds(args: argparse.Namespace) -> int:
    from pipeline.history import format_table, list_builds

    builds = list_builds(args.output_root)
    if not builds:
        print(f"{args.output_root}: no builds yet")
        return 0
    print(format_table([b.as_row() for b in builds]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.history import inspect_text, resolve_build

    print(inspect_text(resolve_build(args.build, args.output_root)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.history import resolve_build
    from pipeline.solving.compare import compare_text

    print(compare_text([resolve_build(b, args.output_root) for b in args.builds]))
    return 0


def cmd_judge_eval(args: argparse.Namespace) -> int:
    from pipeline.judge_eval import SETS, evaluate, fluency_signal, judge_signal, table
    from pipeline.recipe import load_recipe

    sets = list(SETS) if args.set == "all" else [args.set]
    signals = [fluency_signal(args.model)]
    if args.judge:  # the recipe's [judge] (its backend, or the recipe's), whether or not the recipe enables it
        signals.append(judge_signal(load_recipe(args.judge)))
    print(table(evaluate(sets, signals)))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from pipeline.doctor import main as doctor

    return doctor(args.checks)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinyforge", description="Build and curate synthetic training corpora.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="run a build from a recipe (a Prefect flow)")
    b.add_argument("recipe", help="path to a recipe TOML file")
    b.add_argument("--output-root", help="write builds here instead of the recipe's output_root")
    b.add_argument("--name", help="build under this name instead of the recipe's (e.g. one per night); "
                                  "other names' published records are not published again")
    b.add_argument("--runner", default=None, help=f"where batches run: {RUNNERS_HELP}")
    b.add_argument("--wait", type=_seconds, default=0.0, metavar="SECONDS",
                   help="if another run holds the build directory, wait this long for it (default: fail at once)")
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("score", help="add proxy-model difficulty scores to an existing build, then re-publish")
    s.add_argument("build_dir", help="a build's folder, e.g. build/tinystories-demo")
    s.set_defaults(func=cmd_score, output_root=None, runner=None, wait=0.0)
    c = sub.add_parser("check", help="validate a recipe without running it")
    c.add_argument("recipe")
    c.set_defaults(func=cmd_check)
    v = sub.add_parser("verify", help="verify a published dataset against its manifest")
    v.add_argument("dataset", help="a build's dataset/ folder (or its manifest.json)")
    v.add_argument("--execute", action="store_true",
                   help="tinygsm, evolved math: re-run every record's code in the sandbox and compare with its answer")
    v.set_defaults(func=cmd_verify)
    sv = sub.add_parser("serve", help="serve every recipe as a Prefect deployment (start builds from the UI, "
                                      "run [schedule] recipes on their cron)")
    sv.add_argument("recipes", nargs="*", help="recipe files or folders of them (default: flows/recipes)")
    sv.add_argument("--output-root", help="write every served build here instead of its recipe's output_root")
    sv.add_argument("--runner", default=None, help=f"where the batches of served runs run: {RUNNERS_HELP}")
    sv.add_argument("--limit", type=int, default=None, help="at most this many runs at once")
    sv.set_defaults(func=cmd_serve)
    ls = sub.add_parser("builds", help="list the builds under an output root with counts and status")
    ls.add_argument("--output-root", default="build", help="where the builds are (default: build)")
    ls.set_defaults(func=cmd_builds)
    i = sub.add_parser("inspect", help="print a build's report, or how far an unfinished build got")
    i.add_argument("build", help="a build's name (under --output-root), folder or dataset folder")
    i.add_argument("--output-root", default="build", help="where named builds are (default: build)")
    i.set_defaults(func=cmd_inspect)
    cm = sub.add_parser("compare", help="math builds' calibration side by side, per generated token")
    cm.add_argument("builds", nargs="+", help="two or more builds (names under --output-root, or folders)")
    cm.add_argument("--output-root", default="build", help="where named builds are (default: build)")
    cm.set_defaults(func=cmd_compare)
    je = sub.add_parser("judge-eval", help="how well each quality signal separates the shipped good and bad "
                                           "texts (AUROC per failure)")
    je.add_argument("--set", default="all", choices=["all", "stories", "math", "instructions"])
    je.add_argument("--model", default="smollm2-135m-instruct", help="the fluency model: a shipped name or .gguf")
    je.add_argument("--judge", metavar="RECIPE", help="also evaluate the LLM judge this recipe's [judge] configures")
    je.set_defaults(func=cmd_judge_eval)
    d = sub.add_parser("doctor", help="check that every native part (llama.cpp, MinHash, sandbox) works here")
    d.add_argument("checks", nargs="*", help="run only these checks (default: all)")
    d.set_defaults(func=cmd_doctor)
    return p


def _seconds(text: str) -> float:
    """A number of seconds for a flag: finite and not negative (``nan`` would wait forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (finite, 0 or more)")
    return value


def _notes(exc: BaseException) -> str:
    """What was added to an error on its way up (where the flow's log is), on the same line."""
    notes = getattr(exc, "__notes__", None)
    return f" ({'; '.join(notes)})" if notes else ""


# The machine's, not tinyforge's: the user frees space or makes a folder writable, then runs again.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"tinyforge: error: {exc}{_notes(exc)}", file=sys.stderr)
        return 2
    except BuildFailed as exc:
        print(f"tinyforge: build failed: {exc}{_notes(exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        from pipeline.llm.openai_backend import BackendFailed

        if not isinstance(exc, BackendFailed):
            raise
        print(f"tinyforge: {exc}; finished completions are cached: run the same command to resume{_notes(exc)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tinyforge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in _MACHINE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tinyforge: error: {where}{exc.strerror}; what was finished is kept: fix it and run the same "
              f"command again{_notes(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
