"""Datasets and the response cache on fsspec filesystems (memory:// and file://, real fsspec)."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from pipeline.llm.cache import ResponseCache
from pipeline.remote import pull_cache, push_cache, upload_dataset
from tests.test_publish import publish


def _row(key: str, created: float) -> dict[str, object]:
    return {"key": key, "model_id": "m", "sample_index": 0, "text": f"text of {key}", "finish_reason": "stop",
            "prompt_tokens": 3, "completion_tokens": 4, "request_json": "{}", "created_at": created}


def test_upload_copies_every_file_and_the_manifest_last(tmp_path: Path) -> None:
    local = publish(tmp_path)
    url = "memory://bucket/datasets/t"
    upload_dataset(local, url)
    fs = fsspec.filesystem("memory")
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert sorted(p.removeprefix("/bucket/datasets/t/") for p in fs.find("/bucket/datasets/t")) == files
    for name in files:
        assert fs.cat_file(f"/bucket/datasets/t/{name}") == (local / name).read_bytes()

    # an identical, whole copy is not copied again; a damaged one (a file gone, a shard cut short) is
    # repaired; a changed dataset replaces the manifest
    created = {n: fs.info(f"/bucket/datasets/t/{n}")["created"] for n in files}
    upload_dataset(local, url)
    assert {n: fs.info(f"/bucket/datasets/t/{n}")["created"] for n in files} == created
    fs.rm("/bucket/datasets/t/README.md")
    shard = next(n for n in files if n.startswith("data/"))
    fs.pipe_file(f"/bucket/datasets/t/{shard}", fs.cat_file(f"/bucket/datasets/t/{shard}")[:100])
    upload_dataset(local, url)
    for name in files:
        assert fs.cat_file(f"/bucket/datasets/t/{name}") == (local / name).read_bytes(), name
    republished = publish(tmp_path / "again", seed=4)
    manifest = json.loads((republished / "manifest.json").read_text())
    manifest["fingerprint"] = "other"
    (republished / "manifest.json").write_text(json.dumps(manifest))
    upload_dataset(republished, url)
    assert json.loads(fs.cat_file("/bucket/datasets/t/manifest.json"))["fingerprint"] == "other"
    fs.rm("/bucket", recursive=True)


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_two_machines_share_completions_through_segments(tmp_path: Path, scheme: str) -> None:
    url = f"memory://shared-{tmp_path.name}/cache" if scheme == "memory" else (tmp_path / "shared").as_uri()
    a, b = ResponseCache(tmp_path / "a.sqlite"), ResponseCache(tmp_path / "b.sqlite")
    a.import_rows([_row("old", 1.0), _row("k1", 100.0), _row("k2", 101.0)])
    assert push_cache(a, url, since=100.0, label="run-a") == 2  # what this run made, not the old row
    assert push_cache(a, url, since=1e12, label="run-a") == 0  # nothing new: no empty segment
    assert pull_cache(a, url) == 0  # its own segment is not imported back

    assert pull_cache(b, url) == 2 and len(b) == 2
    assert b.get_many(["k1"])["k1"].text == "text of k1"
    assert pull_cache(b, url) == 0  # segments are imported once
    b.import_rows([_row("k3", 200.0)])
    push_cache(b, url, since=200.0, label="run-b")
    assert pull_cache(a, url) == 1 and sorted(r["key"] for r in a.rows_since(0)) == ["k1", "k2", "k3", "old"]
    fs, root = fsspec.core.url_to_fs(url)
    assert len(fs.glob(f"{root}/*.parquet")) == 2 and not fs.glob(f"{root}/.*")  # no temporary files left
    a.close()
    b.close()


def test_storage_urls_are_checked_when_the_recipe_loads(tmp_path: Path) -> None:
    from pipeline.errors import RecipeError
    from pipeline.recipe import load_recipe
    from tests.conftest import write_recipe

    body = 'name = "s"\nkind = "tinystories"\n[generate]\ncount = 2\n[storage]\npublish_to = "nosuch://x/y"\n'
    with pytest.raises(RecipeError, match="storage.publish_to: 'nosuch://x/y': unknown fsspec protocol 'nosuch'"):
        load_recipe(write_recipe(tmp_path / "r.toml", body))
    ok = load_recipe(write_recipe(tmp_path / "o.toml", body.replace("nosuch://x/y", "memory://x/y/")))
    assert ok.storage.publish_to == "memory://x/y"
