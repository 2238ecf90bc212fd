"""The build lock and the build history, on real files and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.history import build_info, format_table, inspect_text, list_builds, resolve_build
from pipeline.lock import BuildLock, BuildLocked, is_locked, read_holder

HOLD = """
import sys, time
from pipeline.lock import BuildLock
with BuildLock(sys.argv[1], run="run-in-another-process"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_lock_fails_clearly_and_names_the_holder(tmp_path: Path) -> None:
    with BuildLock(tmp_path / "b", run="first-run"):
        assert is_locked(tmp_path / "b")
        with pytest.raises(BuildLocked) as err:
            BuildLock(tmp_path / "b").acquire()
    message = str(err.value)
    assert "first-run" in message and "--wait" in message and "\n" not in message
    assert not is_locked(tmp_path / "b")


def test_a_waiting_run_gets_the_lock_when_the_first_releases(tmp_path: Path) -> None:
    first = BuildLock(tmp_path / "b", run="first")
    first.acquire()
    released = threading.Event()

    def release() -> None:
        first.release()
        released.set()

    threading.Timer(0.5, release).start()
    with BuildLock(tmp_path / "b", wait=60, run="second", poll=0.05):
        assert released.is_set()  # it waited for the first run, and got the lock once that let go
        assert read_holder(tmp_path / "b")["run"] == "second"


def test_the_lock_of_a_killed_process_is_gone_with_it(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "b")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert is_locked(tmp_path / "b")
        with pytest.raises(BuildLocked, match=f"pid {proc.pid} .*run-in-another-process"):
            BuildLock(tmp_path / "b", wait=0.2, poll=0.05).acquire()
    finally:
        proc.kill()
        proc.wait()
    with BuildLock(tmp_path / "b"):  # SIGKILL released it: no stale lock to clean up by hand
        pass


def _fake_build(root: Path, name: str, *, published: bool) -> Path:
    """A build folder as a run leaves it: the saved recipe, a finished stage, maybe a dataset."""
    from pipeline.recipe import parse_recipe

    recipe = parse_recipe({"name": name, "kind": "tinystories", "generate": {"count": 2}})
    build = root / name
    (build / "stages" / "generate").mkdir(parents=True)
    (build / "recipe.json").write_text(json.dumps(recipe.model_dump(mode="json")))
    (build / "stages" / "generate" / "_stage.json").write_text(json.dumps({"stage": "generate"}))
    if published:
        (build / "dataset").mkdir()
        manifest = {"format": "tinyforge.dataset", "build_id": recipe.build_id, "recipe_hash": recipe.content_hash(),
                    "splits": {"train": {"rows": 5, "shards": []}, "s2l": {"subset_of": "train", "rows": 2}},
                    "rejected": {"rows": 3}, "usage": {"model_calls": 9}, "published_at": "2026-11-24T03:00:00Z"}
        (build / "dataset" / "manifest.json").write_text(json.dumps(manifest))
        (build / "dataset" / "report.md").write_text("# Build report: done\n")
    return build


def test_builds_lists_status_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_build(tmp_path, "done", published=True)
    half = _fake_build(tmp_path, "half", published=False)
    (tmp_path / "cache").mkdir()  # not a build: skipped
    with BuildLock(_fake_build(tmp_path, "busy", published=False)):
        rows = {b.name: b for b in list_builds(tmp_path)}
        assert main(["builds", "--output-root", str(tmp_path)]) == 0
    assert {n: b.status for n, b in rows.items()} == {"busy": "running", "done": "published", "half": "unfinished"}
    assert rows["done"].rows == {"train": 5} and rows["done"].rejected == 3 and rows["done"].model_calls == 9
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["name", "kind", "status"] and len(out) == 4
    assert "train=5" in out[2] and "2026-11-24T03:00:00Z" in out[2]

    # a recipe changed after the last publish: the dataset on disk is of another recipe
    raw = json.loads((tmp_path / "done" / "recipe.json").read_text())
    raw["generate"]["count"] = 3
    (tmp_path / "done" / "recipe.json").write_text(json.dumps(raw))
    assert build_info(tmp_path / "done").status == "stale"
    assert "finished stages: generate" in inspect_text(half) and "no published dataset yet" in inspect_text(half)


def test_inspect_prints_the_report_by_name_or_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = _fake_build(tmp_path, "done", published=True)
    assert resolve_build("done", tmp_path) == tmp_path / "done"
    assert resolve_build(str(build / "dataset"), "elsewhere") == build
    assert main(["inspect", "done", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "build done (tinystories)" in out and "# Build report: done" in out
    assert main(["inspect", "nope", "--output-root", str(tmp_path)]) == 2
    assert "no such build" in capsys.readouterr().err
    assert main(["builds", "--output-root", str(tmp_path / "missing")]) == 2


def test_format_table_aligns_columns() -> None:
    text = format_table([{"a": "x", "bb": 1}, {"a": "long", "bb": 22}])
    assert text.splitlines() == ["a     bb", "x     1", "long  22"]


def test_runner_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.runners import ENV, RunnerSpec, parse_runner
    from pipeline.errors import UserError

    monkeypatch.delenv(ENV, raising=False)
    assert parse_runner(None) == RunnerSpec("local")
    assert parse_runner("dask:3") == RunnerSpec("dask", workers=3)
    assert parse_runner("tcp://10.0.0.5:8786") == RunnerSpec("dask", address="tcp://10.0.0.5:8786")
    monkeypatch.setenv(ENV, "dask:1")  # what `tinyforge serve --runner` hands its runs
    assert parse_runner(None) == RunnerSpec("dask", workers=1)
    for bad in ("dask:0", "dask:x", "ray"):
        with pytest.raises(UserError):
            parse_runner(bad)
