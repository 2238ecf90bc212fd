"""The sandbox against real hostile programs.

Each program must end with a non-ok status within its timeout, leave the
host unchanged, and leave the sandbox able to run the next program.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from pipeline.sandbox import Sandbox
from tests.conftest import REPO

TIMEOUT = 2.0
SECRET = "sk-tinyforge-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sandbox():
    os.environ["OPENAI_API_KEY"] = SECRET  # in the host's environment while the workers start
    try:
        with Sandbox(workers=2, timeout_s=TIMEOUT, memory_mb=256) as sb:
            yield sb
    finally:
        del os.environ["OPENAI_API_KEY"]


def sandbox_processes() -> list[str]:
    """Processes on the host running as a sandbox uid (61000+)."""
    out = subprocess.run(["ps", "-eo", "uid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split() and 61000 <= int(line.split()[0]) < 61100]


def assert_contained(sb: Sandbox, result, *statuses: str) -> None:
    assert result.status in statuses, result
    assert result.duration_s <= TIMEOUT + 1.0, result
    follow = sb.run("result = 6 * 7")
    assert follow.ok and follow.value == 42, follow  # the next program runs normally
    assert sandbox_processes() == []


def test_a_normal_program(sandbox) -> None:
    r = sandbox.run("import math\nprint('working')\nresult = math.sqrt(16) + 0.5")
    assert r.ok and r.value == 4.5 and r.stdout == "working\n" and r.error is None


def test_fork_bomb(sandbox) -> None:
    r = sandbox.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert_contained(sandbox, r, "killed", "timeout")


def test_memory_bomb(sandbox) -> None:
    r = sandbox.run("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))")
    assert_contained(sandbox, r, "memory_exceeded")


def test_infinite_loop(sandbox) -> None:
    t = time.monotonic()
    r = sandbox.run("while True:\n    pass")
    assert_contained(sandbox, r, "timeout")
    assert time.monotonic() - t < TIMEOUT + 1.0


def test_connect_to_a_live_socket_on_the_host(sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(4)
    port = server.getsockname()[1]
    received: list[bytes] = []

    def accept() -> None:
        try:
            conn, _ = server.accept()
            received.append(conn.recv(100))
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    r = sandbox.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                    "s.sendall(b'stolen data')")
    thread.join()
    server.close()
    assert_contained(sandbox, r, "error")
    assert "Network is unreachable" in r.error
    assert received == []


def test_write_and_delete_outside_scratch(sandbox) -> None:
    target_dir = REPO / "build"
    target_dir.mkdir(exist_ok=True)
    victim = target_dir / f"sandbox-victim-{uuid.uuid4().hex}.txt"
    victim.write_text("keep me")
    created = target_dir / f"sandbox-created-{uuid.uuid4().hex}.txt"
    try:
        r = sandbox.run(f"import os\nos.remove({str(victim)!r})")
        assert_contained(sandbox, r, "error")
        r = sandbox.run(f"open({str(created)!r}, 'w').write('pwned')")
        assert_contained(sandbox, r, "error")
        r = sandbox.run("import shutil\nshutil.rmtree('/usr/lib')")
        assert_contained(sandbox, r, "error")
        assert victim.read_text() == "keep me" and not created.exists()
        assert Path("/usr/lib").is_dir()
    finally:
        victim.unlink(missing_ok=True)


def test_scratch_is_private_and_removed(sandbox) -> None:
    r = sandbox.run("import os\nopen('note.txt', 'w').write('x')\nresult = os.getcwd()")
    assert r.ok and r.value.startswith("/tmp/run-")
    assert not Path(r.value).exists()  # the host never sees the sandbox's /tmp
    again = sandbox.run("import os\nresult = os.listdir('/tmp')")
    assert again.ok and len(again.value) == 1  # only the new program's own scratch dir


def test_secrets_in_the_host_environment_do_not_reach_the_program(sandbox) -> None:
    r = sandbox.run("import os\nresult = os.environ['OPENAI_API_KEY']")
    assert_contained(sandbox, r, "error")
    dump = sandbox.run(
        "import os\nseen = [str(dict(os.environ))]\n"
        "for pid in os.listdir('/proc'):\n"
        "    try:\n        seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))\n"
        "    except OSError:\n        pass\n"
        "result = '\\n'.join(seen)")
    assert dump.ok and SECRET not in dump.value and "OPENAI_API_KEY" not in dump.value


def test_kill_the_parent(sandbox) -> None:
    r = sandbox.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert_contained(sandbox, r, "error")
    r = sandbox.run("import os, signal\nos.kill(-1, signal.SIGKILL)\nimport time\ntime.sleep(5)")
    assert_contained(sandbox, r, "killed", "timeout", "error")


def test_flood_stdout(sandbox) -> None:
    r = sandbox.run("while True:\n    print('spam' * 1000)")
    assert_contained(sandbox, r, "output_exceeded")
    assert 0 < len(r.stdout) <= 64_000


@pytest.mark.parametrize("code", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit(3)"])
def test_exit_before_finishing(sandbox, code: str) -> None:
    r = sandbox.run(code + "\nresult = 1")
    assert_contained(sandbox, r, "error")
    assert r.value is None


def test_deep_recursion(sandbox) -> None:
    r = sandbox.run("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)")
    assert_contained(sandbox, r, "error", "killed", "memory_exceeded", "timeout")


def test_daemon_that_ignores_sigterm_and_outlives_its_parent(sandbox) -> None:
    r = sandbox.run(
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    if os.fork() == 0:\n"
        "        while True:\n            time.sleep(0.1)\n"
        "    os._exit(0)\n"
        "result = 'parent done'")
    assert_contained(sandbox, r, "killed")
    assert "left processes running" in r.error


def test_many_programs_in_order(sandbox) -> None:
    programs = [f"result = {i} * 3" for i in range(200)]
    results = sandbox.run_many(programs)
    assert [r.value for r in results] == [i * 3 for i in range(200)]


def test_non_json_results_are_reported_not_pickled(sandbox) -> None:
    r = sandbox.run("from fractions import Fraction\nresult = Fraction(1, 4)")
    assert r.ok and r.value == 0.25
    r = sandbox.run("result = float('inf')")
    assert r.ok and r.value is None and r.value_repr == "inf"
    r = sandbox.run("result = object()")
    assert r.ok and r.value is None and r.value_repr.startswith("<object object")


def test_results_that_arrive_together_are_all_read() -> None:
    """Several queued programs on one worker: their result lines can reach us in one read."""
    with Sandbox(workers=1, timeout_s=TIMEOUT) as sb:
        (worker,) = sb._workers
        for i in range(3):
            assert worker.send(f"result = {i}", 1.0)
        time.sleep(0.5)  # all three result lines are now waiting in the pipe
        got = [worker.receive(0.5) for _ in range(3)]
        assert [r.value if r else None for r in got] == [0, 1, 2]
