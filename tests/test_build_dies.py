"""A build that dies leaves nothing running: its temporary Prefect server and its workers go with it.

The real command is killed the ways a build really dies (SIGKILL as the OOM
killer sends it, SIGSEGV as a native crash raises it), in the middle of
generation, and every process it had started must be gone moments later.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TINYFORGE, instant_recipe

pytestmark = pytest.mark.slow


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid``, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if alive(p):
            found[p] = command(p)
        todo.extend(children.get(p, []))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has already died; it waits only for its reaper


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


@pytest.mark.parametrize(("how", "runner"), [(signal.SIGKILL, "local"), (signal.SIGSEGV, "dask:1")],
                         ids=["sigkill-local", "segfault-dask"])
def test_a_killed_build_leaves_no_process_behind(tmp_path: Path, prefect_home: dict[str, str], how: signal.Signals,
                                                runner: str) -> None:
    from tests.instant_server import instant_server

    with instant_server(delay_ms=300) as url:  # a batch of 2 takes 0.3 s: the build is mid-generation for long
        recipe = instant_recipe(tmp_path / "dies.toml", url, name="dies", out=tmp_path / "out", count=64,
                                batch_size=2, seed=3)
        _kill_mid_generation(tmp_path, recipe, how, runner, prefect_home)


def _kill_mid_generation(tmp_path: Path, recipe: Path, how: signal.Signals, runner: str, env: dict[str, str]) -> None:
    build = subprocess.Popen([TINYFORGE, "build", str(recipe), "--runner", runner], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started: dict[int, str] = {}
    try:
        # Wait until a first batch is saved: its server, and for Dask its workers, are then all up.
        parts = tmp_path / "out" / "dies" / "stages" / "generate.parts"
        deadline = time.monotonic() + 240
        while not any(parts.glob("*/*")):
            assert build.poll() is None, build.stdout.read() if build.stdout else ""
            assert time.monotonic() < deadline, "the build never started generating"
            time.sleep(0.5)
        started = descendants(build.pid)
        assert any("uvicorn" in c for c in started.values()), started  # its temporary Prefect server
        if runner.startswith("dask"):
            assert any("distributed" in c or "dask" in c or "multiprocessing" in c for c in started.values()), started

        os.kill(build.pid, how)
        build.wait(timeout=30)
        assert build.returncode == -how

        deadline = time.monotonic() + 20
        while (left := {p: c for p, c in started.items() if alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert left == {}, f"still running after the build died: {left}"
    finally:  # whatever failed, leave nothing of this test running either
        for pid in [build.pid, *started, *descendants(build.pid)]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        build.wait()


def test_ctrl_c_stops_the_build_cleanly_and_the_next_run_resumes(tmp_path: Path, prefect_home: dict[str, str]) -> None:
    """Ctrl-C in a terminal: SIGINT to the build's whole process group, mid-generation. The command says
    so on one line and exits 130, nothing it started is left running, its lock is released, and the same
    command then asks the server only for what the interrupted run had not cached."""
    from pipeline.kinds import InProcess, run_build
    from pipeline.lock import is_locked
    from pipeline.recipe import load_recipe
    from pipeline.shards import verify_dataset
    from tests.instant_server import instant_server
    from tests.test_build_e2e import _cached

    out = tmp_path / "out"
    with instant_server(delay_ms=400) as url:  # each batch of 2 takes 0.4 s: the interrupt lands mid-way
        recipe = instant_recipe(tmp_path / "stop.toml", url, name="stop", out=out, count=20, batch_size=2)
        build = subprocess.Popen([TINYFORGE, "build", str(recipe)], env=prefect_home, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        started: dict[int, str] = {}
        try:
            parts = out / "stop" / "stages" / "generate.parts"
            deadline = time.monotonic() + 240
            while len(list(parts.glob("*/*"))) < 2:
                assert build.poll() is None, build.communicate()
                assert time.monotonic() < deadline, "the build never started generating"
                time.sleep(0.1)
            started = descendants(build.pid)
            assert any("uvicorn" in c for c in started.values()), started  # its temporary Prefect server
            os.killpg(build.pid, signal.SIGINT)
            stdout, stderr = build.communicate(timeout=60)
            assert build.returncode == 130, stderr[-3000:]
            assert "tinyforge: interrupted; run the same command again to resume" in stderr.splitlines()
            assert "Traceback" not in stderr

            deadline = time.monotonic() + 20
            while (left := {p: c for p, c in started.items() if alive(p)}) and time.monotonic() < deadline:
                time.sleep(0.25)
            assert left == {}, f"still running after the interrupt: {left}"
        finally:
            for pid in [build.pid, *started, *descendants(build.pid)]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            build.wait()
        assert not is_locked(out / "stop") and not (out / "stop" / "dataset").exists()
        cached = _cached(out / "cache" / "responses.sqlite")
        assert 2 <= cached < 20, cached

        # the next run (the library's entry point: the command's own path is what was interrupted above)
        outcome = run_build(load_recipe(recipe), InProcess(echo=lambda _: None))
    # nothing the interrupted run had was asked for again (its finished batches are reused whole, the
    # rest of its completions come from the cache), and nothing was lost
    calls, hits = outcome.usage["model_calls"], outcome.usage["cache_hits"]
    assert calls == 20 - cached and hits <= cached and verify_dataset(outcome.published.path)
    assert _cached(out / "cache" / "responses.sqlite") == 20
