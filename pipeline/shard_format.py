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
    """A manifest from ``read()`` (a local file, or any fsspec file), checked to be tinyforge's and to
    have the shape readers rely on (:func:`check_manifest`)."""
    try:
        manifest = json.loads(read())
    except FileNotFoundError:
        raise IntegrityError(f"{where}: no manifest (not a published tinyforge dataset, or not finished)") from None
    except IsADirectoryError:
        raise IntegrityError(f"{where}: the manifest is a directory, not a file") from None
    except OSError as exc:
        raise IntegrityError(f"{where}: the manifest cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where}: unreadable manifest: {exc}") from None
    except RecursionError:
        raise IntegrityError(f"{where}: unreadable manifest: nested too deeply") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"{where}: not a tinyforge dataset manifest")
    check_manifest(manifest, where)
    return manifest


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_manifest(manifest: dict[str, Any], where: str) -> None:
    """The fields readers use, by type: a format version this code reads; ``splits`` a table of splits,
    each with its row count and its shards (path, rows, bytes, sha256), the rows adding up; the rejected
    table's and the schemas' path and sha256 where present. One line naming what is wrong."""
    def bad(what: str) -> IntegrityError:
        return IntegrityError(f"{where}: damaged manifest: {what}")

    version = manifest.get("format_version")
    if type(version) is not int:
        raise bad(f"format_version is {version!r}")
    if version > FORMAT_VERSION:
        raise IntegrityError(f"{where}: format_version {version} is newer than this tinyforge reads "
                             f"({FORMAT_VERSION}): upgrade tinyforge")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise bad("no splits")
    for name, meta in splits.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("shards"), list):
            raise bad(f"split {name!r} has no list of shards")
        for i, shard in enumerate(meta["shards"]):
            if not (isinstance(shard, dict) and isinstance(shard.get("path"), str) and _is_count(shard.get("rows"))
                    and _is_count(shard.get("bytes")) and _is_sha256(shard.get("sha256"))):
                raise bad(f"shard {i} of split {name!r} lacks a path, a row count, a byte count or a sha256")
        if not _is_count(meta.get("rows")) or meta["rows"] != sum(s["rows"] for s in meta["shards"]):
            raise bad(f"split {name!r} says {meta.get('rows')!r} rows, its shards hold "
                      f"{sum(s['rows'] for s in meta['shards'])}")
        if "schema" in meta and not _is_file_ref(meta["schema"], "file"):
            raise bad(f"split {name!r} names its schema without a file and sha256")
    if "schema" in manifest and not _is_file_ref(manifest["schema"], "file"):
        raise bad("the schema has no file and sha256")
    if manifest.get("rejected") is not None and not _is_file_ref(manifest["rejected"], "path"):
        raise bad("the rejected table has no path and sha256")
    plots = manifest.get("plots")
    if plots is not None and not (isinstance(plots, dict) and all(isinstance(v, str) for v in plots.values())):
        raise bad("plots is not a table of file paths")


def _is_file_ref(value: object, key: str) -> bool:
    return isinstance(value, dict) and isinstance(value.get(key), str) and _is_sha256(value.get("sha256"))
