"""The published dataset's format: its file names, its format tag, and how a manifest is read.

The writer (``pipeline.publish``) and the readers (``pipeline.shards``,
``pipeline.loader``) share these, and this module imports nothing but the
standard library and ``pipeline.errors``: a training job that reads shards
loads none of the writer's side (recipes, pydantic, polars, Prefect).
What a manifest holds is described in docs/shards.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline.errors import IntegrityError

MANIFEST = "manifest.json"  # at the dataset folder's root, beside data/
PLOTS = "plots"  # folder of the report's PNG figures
FORMAT = "tinyforge.dataset"  # the manifest's "format": what tells a tinyforge dataset from any other folder
FORMAT_VERSION = 1  # the manifest's "format_version"


def read_manifest(read: Callable[[], bytes], where: str) -> dict[str, Any]:
    """A manifest from ``read()`` (a local file, or any fsspec file), checked to be tinyforge's."""
    try:
        manifest = json.loads(read())
    except FileNotFoundError:
        raise IntegrityError(f"{where}: no manifest (not a published tinyforge dataset, or not finished)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"{where}: not a tinyforge dataset manifest")
    return manifest
