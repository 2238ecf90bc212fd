"""What builds an output root holds: ``tinyforge builds`` and ``tinyforge inspect``.

Everything here is read from the build folders themselves (``recipe.json``,
stage metadata, the published manifest, the lock), never from Prefect's
database: the history is as durable as the data, and works without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.lock import describe, is_locked, read_holder
from pipeline.shard_format import MANIFEST
from pipeline.stages import STAGE_META


@dataclass(frozen=True)
class BuildInfo:
    name: str
    path: Path
    kind: str
    status: str  # running | published | stale | unfinished
    build_id: str | None  # of the published dataset
    rows: dict[str, int]  # split -> rows
    rejected: int
    model_calls: int
    published_at: str | None
    stages_done: list[str]

    def as_row(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "build id": self.build_id or "-",
                "rows": " ".join(f"{k}={v}" for k, v in self.rows.items()) or "-", "rejected": self.rejected,
                "model calls": self.model_calls, "published": self.published_at or "-"}


def _json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing, unreadable, not JSON or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def finished_stages(build: Path) -> list[str]:
    """Stage folders that are complete (their metadata is written last), in the order they finished."""
    metas = [(p.stat().st_mtime, m["stage"]) for p in (build / "stages").glob(f"*/{STAGE_META}")
             if (m := _json(p)) and "stage" in m]
    return [name for _, name in sorted(metas)]


def build_info(build: Path) -> BuildInfo | None:
    """A build folder's state, or None for a folder that is not a build (the cache, the index). A damaged
    build is listed as such, with why: one bad folder never hides the others."""
    if not (build / "recipe.json").exists():
        return None
    try:
        return _build_info(build)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return BuildInfo(name=build.name, path=build, kind="?", status=f"damaged ({type(exc).__name__}: {exc})",
                         build_id=None, rows={}, rejected=0, model_calls=0, published_at=None, stages_done=[])


def _build_info(build: Path) -> BuildInfo:
    recipe = _json(build / "recipe.json")
    if recipe is None:
        raise ValueError("recipe.json is not a readable JSON object")
    manifest = _json(build / "dataset" / MANIFEST)
    saved_hash = _recipe_hash(recipe)
    if is_locked(build):
        status = "running"
    elif manifest is None:
        status = "unfinished"
    elif saved_hash is not None and manifest.get("recipe_hash") != saved_hash:
        status = "stale"  # the last run started from another recipe and did not publish
    else:
        status = "published"
    splits = (manifest or {}).get("splits", {})
    return BuildInfo(
        name=build.name, path=build, kind=recipe.get("kind", "?"), status=status,
        build_id=(manifest or {}).get("build_id"),
        rows={k: v["rows"] for k, v in splits.items() if not v.get("subset_of")},
        rejected=(manifest or {}).get("rejected", {}).get("rows", 0),
        model_calls=(manifest or {}).get("usage", {}).get("model_calls", 0),
        published_at=(manifest or {}).get("published_at"),
        stages_done=finished_stages(build),
    )


def _recipe_hash(raw: dict[str, Any]) -> str | None:
    from pipeline.recipe import parse_recipe

    try:
        return parse_recipe(raw).content_hash()
    except (UserError, RecursionError):  # an input file the recipe named has moved since: status can still show
        return None


def list_builds(output_root: str | Path) -> list[BuildInfo]:
    root = Path(output_root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder (pass the builds' output root with --output-root)")
    infos = [info for p in sorted(root.iterdir()) if p.is_dir() and (info := build_info(p)) is not None]
    return infos


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned plain-text columns for a terminal."""
    if not rows:
        return ""
    head = list(rows[0])
    cells = [head] + [[str(r[h]) for h in head] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def resolve_build(ref: str, output_root: str | Path) -> Path:
    """A build named on the command line: its folder, its dataset folder, or its name under output_root."""
    p = Path(ref)
    if p.name == "dataset" and (p.parent / "recipe.json").is_file():
        return p.parent
    for candidate in (p, Path(output_root) / ref):
        if (candidate / "recipe.json").is_file():
            return candidate
    raise UserError(f"{ref}: no such build (not a build folder, and no build of that name under {output_root})")


def inspect_text(build: Path) -> str:
    """The published report, or for a build that never published, how far it got."""
    info = build_info(build)
    assert info is not None  # resolve_build checked recipe.json
    head = [f"build {info.name} ({info.kind}) at {build}: {info.status}"]
    if info.status.startswith("damaged"):
        return "\n".join(head)
    if info.status == "running":
        head.append(f"  held by {describe(read_holder(build))}")
    head.append(f"  finished stages: {', '.join(info.stages_done) or 'none'}")
    parts = sorted((build / "stages").glob("*.parts/*/part-*.json"))
    if parts:
        head.append(f"  batches finished in a stage still running: {len(parts)}")
    report = build / "dataset" / "report.md"
    manifest = build / "dataset" / "manifest.json"
    if manifest.is_file():
        head += [f"  note: {n}" for n in ((_json(manifest) or {}).get("notes") or [])]
    if report.is_file():
        if info.status == "stale":
            head.append("  the report below is of the last published dataset; the recipe has changed since")
        return "\n".join(head) + "\n\n" + report.read_text(encoding="utf-8")
    return "\n".join(head) + "\n\n(no published dataset yet: run `tinyforge build` with its recipe to finish it)"
