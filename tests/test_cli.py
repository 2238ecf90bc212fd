"""The documented flags of `tinyforge build` and `tinyforge check`, through the installed command.

Builds here take their stories from the instant server (tests/instant_server.py): these tests are about
the command, and what a model would sample has no part in them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.lock import BuildLock
from pipeline.recipe import load_recipe
from pipeline.shards import verify_dataset
from tests.conftest import TINYFORGE, instant_recipe, recipe_seed, write_recipe

def recipe(tmp_path: Path, extra: str = "", url: str = "http://127.0.0.1:9/v1") -> Path:
    """Two stories from the OpenAI-compatible server at ``url`` (for a check, none need be there)."""
    return instant_recipe(tmp_path / "flags.toml", url, name="flags", out=tmp_path / "out", count=2, batch_size=2,
                          seed=recipe_seed(3), extra=extra)


def tinyforge(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TINYFORGE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The stderr of a command that failed as a user's mistake should: one line, that exit code, no traceback."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stderr.startswith("tinyforge: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.stderr.strip()


# --- tinyforge check -------------------------------------------------------------------------------


def test_check_prints_the_build_id_and_where_it_would_build(tmp_path: Path) -> None:
    path = recipe(tmp_path)
    proc = tinyforge("check", str(path))
    r = load_recipe(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{path}: ok (tinystories, build id {r.build_id}, output {tmp_path / 'out' / 'flags'})\n"
    assert r.build_id.startswith("flags-") and len(r.build_id) == len("flags-") + 10
    assert not (tmp_path / "out").exists()  # checked, not built

    # the id is the recipe's hash: another count is another build id
    other = write_recipe(tmp_path / "other.toml", path.read_text().replace("count = 2", "count = 3"))
    assert f"build id {load_recipe(other).build_id}," in tinyforge("check", str(other)).stdout
    assert load_recipe(other).build_id != r.build_id


def test_check_reports_a_bad_key_in_one_line(tmp_path: Path) -> None:
    path = recipe(tmp_path, "\n[sampling]\ntemprature = 0.5\n")
    proc = tinyforge("check", str(path))
    message = one_line_error(proc)
    assert "sampling.temprature: unknown key" in message and str(path) in message
    assert proc.stdout == ""


# --- tinyforge build: flags that fail before anything runs ----------------------------------------


# (In process: the command's own entry point, main(), with what it prints; test_check_reports_a_bad_key
# above runs the installed command for the same one-line contract.)


def one_line_error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from flows.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("tinyforge: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err.strip()


@pytest.mark.parametrize(("runner", "expected"), [
    ("ray", "unknown runner 'ray': local (default), dask, dask:N"),
    ("dask:0", "--runner dask:0: the worker count must be a positive integer"),
    ("dask:two", "--runner dask:two: the worker count must be a positive integer"),
])
def test_a_bad_runner_is_one_line_and_builds_nothing(tmp_path: Path, runner: str, expected: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path)
    assert expected in one_line_error_of(["build", str(path), "--runner", runner], capsys)
    assert not (tmp_path / "out").exists()


def test_a_bad_name_is_one_line_and_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recipe(tmp_path)
    assert "'Has Spaces' is not a build name" in one_line_error_of(["build", str(path), "--name", "Has Spaces"],
                                                                    capsys)
    assert not (tmp_path / "out").exists()


# --- tinyforge build: flags of a real build -------------------------------------------------------


@pytest.mark.slow
def test_runner_local_name_and_output_root_build_where_they_say(prefect_server: str, instant_url: str,
                                                                tmp_path: Path) -> None:
    path = recipe(tmp_path, url=instant_url)
    root = tmp_path / "elsewhere"
    proc = tinyforge("build", str(path), "--runner", "local", "--name", "flags-copy", "--output-root", str(root),
                     env={"PREFECT_API_URL": prefect_server})
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = load_recipe(path, output_root=root, name="flags-copy")
    assert expected.build_id.startswith("flags-copy-") and expected.build_id != load_recipe(path).build_id
    assert f"tinyforge: building {expected.build_id} into {root / 'flags-copy'}" in proc.stdout
    assert "2 model calls, 0 cache hits this run" in proc.stdout
    ds = verify_dataset(root / "flags-copy" / "dataset")
    assert ds.manifest["build_id"] == expected.build_id
    assert f"manifest: {ds.path}/manifest.json" in proc.stdout
    assert sorted(p.name for p in root.iterdir()) == ["cache", "flags-copy", "index"]  # no folder of the recipe's name
    assert not (tmp_path / "out").exists()  # nothing under the recipe's own output_root
    builds = tinyforge("builds", "--output-root", str(root))
    assert builds.returncode == 0 and expected.build_id in builds.stdout and "published" in builds.stdout


def _holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (a run waiting for the build lock keeps the lock file open)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


@pytest.mark.slow
def test_wait_waits_for_the_run_that_holds_the_build_then_builds(prefect_server: str, instant_url: str,
                                                                 tmp_path: Path) -> None:
    path = recipe(tmp_path, url=instant_url)
    build_dir = tmp_path / "out" / "flags"
    env = {"PREFECT_API_URL": prefect_server}
    holder = BuildLock(build_dir, run="the-first-run")
    holder.acquire()
    try:
        # a wait shorter than the holder's run: one line, after waiting, naming the holder
        t0 = time.monotonic()
        message = one_line_error(tinyforge("build", str(path), "--wait", "2", env=env))
        assert time.monotonic() - t0 >= 2
        assert f"{build_dir} is being built by pid {os.getpid()}" in message and "the-first-run" in message
        assert "after waiting 2 s" in message

        log = (tmp_path / "second.log").open("w")
        second = subprocess.Popen([TINYFORGE, "build", str(path), "--wait", "300"], env={**os.environ, **env},
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while not _holds_open(second.pid, (build_dir / ".lock").resolve()):
                assert second.poll() is None, (tmp_path / "second.log").read_text()
                assert time.monotonic() < deadline, "the second build never reached the lock"
                time.sleep(0.2)
            time.sleep(1)
            # waiting: still running, nothing built, not even started
            assert second.poll() is None, (tmp_path / "second.log").read_text()
            assert "building" not in (tmp_path / "second.log").read_text()
            assert not (build_dir / "dataset").exists()
        except BaseException:
            second.kill()
            second.wait()
            raise
    finally:
        holder.release()  # the first run ends
    assert second.wait(300) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log.close()
    out = (tmp_path / "second.log").read_text()
    assert "tinyforge: building flags-" in out and "done (train: 2 rows" in out
    assert verify_dataset(build_dir / "dataset").manifest["splits"]["train"]["rows"] == 2

