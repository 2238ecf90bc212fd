"""The corpus kinds, found by name: installed distributions' ``tinyforge.kinds`` entry points, and kinds
``register`` added to this process.

tinyforge's own four are entry points of its ``pyproject.toml``; another
distribution adds its own the same way (``poems = "tinyforge_poems:KIND"``). A
kind's module is imported on first use, so a fresh process (the command, a Dask
worker) knows every installed kind without being told, and a process that never
asks for a kind imports none. This module imports nothing of a kind, nor the
recipe: it is what the recipe loader, the build entry and the command ask.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.kinds import Kind

ENTRY_POINTS = "tinyforge.kinds"  # name = "package.module:KIND" in a distribution's entry points
_KINDS: dict[str, Kind] = {}


@cache
def installed() -> dict[str, EntryPoint]:
    """The kinds installed distributions declare, by name (read once per process)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def register(kind: Kind) -> Kind:
    """Make ``kind`` known to recipes, builds, flows and the CLI in this process."""
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind ``register`` added (a test's, say); an installed kind cannot be removed."""
    if name in installed():
        raise ValueError(f"{name!r} is an installed kind")
    _KINDS.pop(name, None)


def get_kind(name: str) -> Kind:
    if name not in _KINDS and name in installed():
        _KINDS[name] = _load(installed()[name])
    if name not in _KINDS:
        raise KeyError(f"unknown corpus kind {name!r} (one of {', '.join(kind_names())})")
    return _KINDS[name]


def _load(entry: EntryPoint) -> Kind:
    kind = entry.load()
    if getattr(kind, "name", None) != entry.name or not hasattr(kind, "context"):  # a Kind, named as declared
        raise TypeError(f"the {ENTRY_POINTS} entry point {entry.name!r} = {entry.value!r} is not the Kind "
                        f"named {entry.name!r} (got {type(kind).__name__})")
    return kind


def kind_names() -> list[str]:
    return list(dict.fromkeys([*installed(), *_KINDS]))
