"""Prefect artifacts shared by every flow: the report, tables, progress."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from pipeline.publish import Published
from pipeline.report import rejection_table, stage_table, usage_table


def artifact_key(*parts: str) -> str:
    """Artifact keys may hold only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


class Progress:
    """A progress artifact the UI shows as a bar, updated as batches finish."""

    def __init__(self, name: str, stage: str, total: int):
        self.total, self.done = max(total, 1), 0
        self._id: UUID = create_progress_artifact(
            0.0, key=artifact_key(name, stage, "progress"), description=f"{name}: {stage} progress"
        )

    def advance(self, n: int = 1) -> float:
        self.done += n
        pct = 100.0 * self.done / self.total
        update_progress_artifact(self._id, pct)
        return pct


def inline_images(markdown: str, root: Path) -> str:
    """Images the report links by relative path, inlined as data URIs.

    The Prefect UI runs in a browser that cannot read the build's folder; the
    report on disk keeps plain links so it stays small and readable.
    """
    def inline(m: re.Match[str]) -> str:
        path = root / m.group(2)
        if not path.is_file():
            return m.group(0)
        return f"![{m.group(1)}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)", inline, markdown)


def publish_build_artifacts(name: str, published: Published) -> None:
    """The build report as markdown (plots inline), plus stage counts, rejections and usage as tables."""
    manifest = published.manifest
    report = inline_images((published.path / "report.md").read_text(encoding="utf-8"), published.path)
    links = "\n".join(f"- `{p}`" for p in published.shards)
    create_markdown_artifact(
        f"{report}\n\n## Files\n\n- dataset: `{published.path}`\n- manifest: `{published.path / 'manifest.json'}`\n"
        f"{links}\n",
        key=artifact_key(name, "report"),
        description=f"Build report for {manifest['build_id']}",
    )
    create_table_artifact(stage_table(manifest["stages"]), key=artifact_key(name, "stages"),
                          description="Records in, kept and rejected per stage")
    rejected = pl.read_parquet(published.path / manifest["rejected"]["path"])
    rows: list[dict[str, Any]] = rejection_table(rejected) or [{"stage": "-", "reason": "none", "count": 0}]
    create_table_artifact(rows, key=artifact_key(name, "rejections"), description="Rejected records by reason")
    create_table_artifact(usage_table(manifest), key=artifact_key(name, "usage"),
                          description="Model calls, tokens and cost per stage")
