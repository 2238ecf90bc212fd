"""The sandbox against real hostile programs.

Each program must end with a non-ok status within its timeout, leave the
host unchanged, and leave the sandbox able to run the next program.
What a program can see and leave behind: tests/test_sandbox_isolation.py;
the result channel: tests/test_sandbox_protocol.py.
"""

from __future__ import annotations

import errno
import os
import socket
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
    """One worker: each hostile program's follow-up (assert_contained) runs on the very worker it attacked."""
    os.environ["OPENAI_API_KEY"] = SECRET  # in the host's environment while the workers start
    try:
        with Sandbox(workers=1, timeout_s=TIMEOUT, memory_mb=256) as sb:
            yield sb
    finally:
        del os.environ["OPENAI_API_KEY"]


def _host_processes() -> dict[int, tuple[int, int]]:
    """Every process on the host: pid -> (parent pid, real uid)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            uid = int(Path(f"/proc/{entry}/status").read_text().split("\nUid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
        procs[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), uid)  # the name may hold spaces or ")"
    return procs


def worker_pids(sb: Sandbox) -> list[int]:
    """The host's pids of the workers (PID 1 of each sandbox namespace): the children of `unshare`."""
    procs = _host_processes()
    starters = {w.proc.pid for w in sb._workers if w.proc}
    return [pid for pid, (ppid, _) in procs.items() if ppid in starters]


def sandbox_processes(sb: Sandbox) -> list[str]:
    """Processes a program left: anything in a worker's PID namespace or below a worker in the process
    tree other than the worker itself, whatever its uid; also any host process with a worker's uid."""
    procs = _host_processes()
    workers = set(worker_pids(sb))
    uids = {w.uid for w in sb._workers if w.uid is not None}
    namespaces = {os.readlink(f"/proc/{pid}/ns/pid") for pid in workers}

    def below_a_worker(pid: int) -> bool:
        seen = set()
        while pid in procs and pid not in seen:
            seen.add(pid)
            pid = procs[pid][0]
            if pid in workers:
                return True
        return False

    left = []
    for pid, (_, uid) in procs.items():
        if pid in workers:
            continue
        try:
            in_namespace = os.readlink(f"/proc/{pid}/ns/pid") in namespaces
        except OSError:
            in_namespace = False
        if in_namespace or below_a_worker(pid) or uid in uids:
            left.append(f"pid {pid} uid {uid}")
    return left


def test_sandbox_processes_finds_what_a_program_leaves_running() -> None:
    """The leftover check itself: it must see a live program's processes whatever uid they run as."""
    for user_namespace in (False, True):
        with Sandbox(workers=1, timeout_s=5.0, user_namespace=user_namespace) as sb:
            assert sandbox_processes(sb) == []
            done = threading.Event()
            seen: list[list[str]] = []

            def watch() -> None:
                while not done.is_set() and not seen:
                    if found := sandbox_processes(sb):
                        seen.append(found)
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch)
            watcher.start()
            r = sb.run("import os, time\nif os.fork() == 0:\n    time.sleep(10)\ntime.sleep(3)")
            done.set()
            watcher.join()
            assert r.status == "killed" and seen, (user_namespace, r)
            assert sandbox_processes(sb) == []


def assert_contained(sb: Sandbox, result, *statuses: str) -> None:
    """The attack ended with one of ``statuses``; the same worker then runs an honest program normally
    (the sandbox has one worker), and nothing the attack started is left anywhere."""
    assert result.status in statuses, result
    follow = sb.run("result = 6 * 7")
    assert follow.ok and follow.value == 42, follow
    assert sandbox_processes(sb) == []


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
    r = sandbox.run("while True:\n    pass")
    assert_contained(sandbox, r, "timeout")
    assert "CPU" in r.error and r.cpu_s >= TIMEOUT, r  # stopped for its CPU time, whatever the clock said


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


def test_files_outside_the_view_cannot_be_touched(sandbox) -> None:
    """The host's files are not in the sandbox at all: deleting or creating one fails as 'not found'."""
    target_dir = REPO / "build"
    target_dir.mkdir(exist_ok=True)
    victim = target_dir / f"sandbox-victim-{uuid.uuid4().hex}.txt"
    victim.write_text("keep me")
    created = target_dir / f"sandbox-created-{uuid.uuid4().hex}.txt"
    try:
        r = sandbox.run(f"import os\nos.remove({str(victim)!r})")
        assert_contained(sandbox, r, "error")
        assert r.error.startswith("FileNotFoundError"), r.error
        r = sandbox.run(f"open({str(created)!r}, 'w').write('pwned')")
        assert_contained(sandbox, r, "error")
        assert r.error.startswith("FileNotFoundError"), r.error
        assert victim.read_text() == "keep me" and not created.exists()
    finally:
        victim.unlink(missing_ok=True)


def test_what_the_sandbox_shows_is_read_only(sandbox) -> None:
    """The standard library is visible (programs import from it) and cannot be changed: every write to
    it, and to anything else outside the scratch places, fails with EROFS, not for a lack of permission."""
    stdlib = os.path.dirname(os.__file__)
    attempts = {
        "create": f"open({stdlib + '/pwned.py'!r}, 'w')",
        "delete": f"os.remove({stdlib + '/os.py'!r})",
        "rmtree": f"shutil.rmtree({stdlib + '/json'!r})",
        "rename": f"os.rename({stdlib + '/os.py'!r}, {stdlib + '/os2.py'!r})",
        "mkdir in /": "os.mkdir('/pwned')",
        "mkdir in /dev": "os.mkdir('/dev/pwned')",
        "sysctl": "open('/proc/sys/kernel/hostname', 'w').write('pwned')",
    }
    code = "import os, shutil\nerrors = {}\n"
    for name, attempt in attempts.items():
        code += f"try:\n    {attempt}\n    errors[{name!r}] = 0\nexcept OSError as exc:\n    errors[{name!r}] = exc.errno\n"
    code += "result = [errors, os.path.isfile(os.__file__)]"
    r = sandbox.run(code)
    assert r.ok, r
    errors, visible = r.value
    assert visible
    assert errors == {name: errno.EROFS for name in attempts}, errors
    assert Path(stdlib, "os.py").is_file() and not Path(stdlib, "pwned.py").exists()


def test_scratch_is_private_and_removed() -> None:
    with Sandbox(workers=1, timeout_s=TIMEOUT) as sb:  # one worker: the second program runs where the first did
        r = sb.run("import os\nopen('note.txt', 'w').write('x')\nresult = os.getcwd()")
        assert r.ok and r.value.startswith("/tmp/run-")
        assert not Path(r.value).exists()  # the host never sees the sandbox's /tmp
        again = sb.run("import os\nresult = [os.getcwd(), os.listdir('/tmp')]")
        assert again.ok
        cwd, listing = again.value
        assert listing == [os.path.basename(cwd)] and cwd != r.value  # only its own, new scratch dir


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


def test_each_program_gets_exactly_its_own_environment() -> None:
    """Four variables, HOME and TMPDIR its own scratch dir, in the process (os.environ) and in what it
    execs (the C environ); what one program sets or deletes is gone for the next on the same worker."""
    probe = ("import ctypes, itertools, os\n"
             "environ = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), 'environ')\n"
             "c_environ = [e.decode() for e in itertools.takewhile(bool, (environ[i] for i in itertools.count()))]\n"
             "result = [dict(os.environ), os.getcwd(), c_environ]\n")
    with Sandbox(workers=1, timeout_s=TIMEOUT) as sb:
        first = sb.run(probe + "os.environ['LEFT_BEHIND'] = '1'\nos.putenv('ALSO_LEFT', '1')\ndel os.environ['PATH']")
        second = sb.run(probe)
    assert first.ok and second.ok, (first, second)
    for r in (first, second):
        env, cwd, c_environ = r.value
        assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": cwd, "TMPDIR": cwd}
        assert sorted(c_environ) == sorted(f"{k}={v}" for k, v in env.items())
    assert first.value[1] != second.value[1]


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
    """Several queued programs on one worker: their replies can reach us in one read."""
    with Sandbox(workers=1, timeout_s=TIMEOUT) as sb:
        def slow_reader(i: int, r) -> None:
            if i == 0:
                time.sleep(0.5)  # meanwhile the worker answers the others: their replies wait in the pipe

        got = sb.run_many([f"result = {i}" for i in range(4)], on_result=slow_reader, depth=4)
        assert [r.value for r in got] == [0, 1, 2, 3]
