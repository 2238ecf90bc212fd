"""``tinyforge serve``: every recipe as a Prefect deployment, run by this process.

A maintainer starts a build from the Prefect UI (parameters pre-filled from
the recipe, each one editable), and recipes with a ``[schedule]`` section run
on their cron. Served runs execute in child processes of this one, so a
crashed build never takes the server down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import Recipe, load_recipe


def recipe_files(paths: Sequence[str]) -> list[Path]:
    """Recipe files named on the command line; a folder means every *.toml in it."""
    files: list[Path] = []
    for p in map(Path, paths or [str(RECIPES_DIR)]):
        if p.is_dir():
            files += sorted(p.glob("*.toml"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such recipe file or folder")
    if not files:
        raise UserError(f"no recipes (*.toml) in {', '.join(paths)}")
    return [f.resolve() for f in files]


def deployment_parameters(path: Path, recipe: Recipe, output_root: str | None) -> dict[str, Any]:
    """What differs from the flow's own defaults (name, seed, dated), which the UI shows from its signature."""
    return {"recipe_path": str(path), "output_root": output_root,
            "wait_for_lock": recipe.schedule.wait_for_lock if recipe.schedule else 0.0}


def deployments(files: Sequence[Path], output_root: str | None = None) -> list[Any]:
    """One deployment per recipe, named after it, under its kind's flow."""
    from prefect.schedules import Cron

    from flows import flow_for

    out, seen = [], {}
    for path in files:
        recipe = load_recipe(path, output_root=output_root)  # a broken recipe stops serve before it starts
        key = (recipe.kind, recipe.name)
        if key in seen:
            raise UserError(f"{path} and {seen[key]} both define the {recipe.kind} recipe {recipe.name!r}")
        seen[key] = path
        schedules = []
        if recipe.schedule:
            # The schedule's runs are dated; a run started from the UI builds the recipe as it is.
            schedules = [Cron(recipe.schedule.cron, timezone=recipe.schedule.timezone,
                              parameters={"dated": recipe.schedule.dated})]
        out.append(flow_for(recipe.kind).to_deployment(
            name=recipe.name,
            parameters=deployment_parameters(path, recipe, output_root),
            schedules=schedules,
            description=recipe.description or f"{recipe.kind} build from {path.name}",
            tags=["tinyforge", recipe.kind],
        ))
    return out


def serve_recipes(paths: Sequence[str], output_root: str | None = None, limit: int | None = None) -> None:
    from prefect import serve

    found = deployments(recipe_files(paths), output_root)
    serve(*found, limit=limit)
