"""Verdicts that hold under hostile programs: no blamed neighbours, no crashed builds, no forged passes.

Each attack runs inside the sandbox, and each test checks the attacker's verdict AND that of an
honest program beside it or after it, on the same worker where that is the point (one-worker
sandboxes):

1. a program whose processes take long to die is not charged to the next program;
2. a result the host cannot store (an integer beyond 64 bits behind a lying ``__abs__``, NaN,
   1e400) is an error with a reason, and verification does not crash on it;
3. lone surrogates arrive as valid UTF-8, and the TinyGSM samples table is built from them;
4. ``ok`` cannot be forged by a report followed by ``os._exit``, SIGKILL or a crash;
5. a neighbour's spinning processes do not make an honest program time out (CPU time);
6. two sandboxes never share a uid, so one's process quota is not another's;
7. a program's processes and SysV segments together stay within ``memory_mb``;

and the cheap hardening: no new namespaces, no execve, no io_uring or vsock, no file locks, the
same pids for every program, no host path in the worker's command line or the cgroup paths.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.sandbox import Sandbox
from pipeline.sandbox import sandbox as sandbox_module
from pipeline.sandbox.cgroups import ProgramCgroup
from pipeline.solving.calibrate import samples_frame
from pipeline.tinygsm.verify import verify_problems
from tests.conftest import REPO
from tests.test_sandbox import sandbox_processes

HONEST = "result = 6 * 7"


def assert_honest(sb: Sandbox, times: int = 3) -> None:
    for _ in range(times):
        r = sb.run(HONEST)
        assert r.ok and r.value == 42, r


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=256) as box:
        yield box


# --- 1. a slow death is the dying program's, not the next one's ---------------------------------------------

SLOW_DYING = """
import mmap, os, time
for _ in range(4):
    if os.fork() == 0:
        maps = [mmap.mmap(-1, 4096) for _ in range(20000)]  # shared: each its own mapping, never merged
        for m in maps:
            m[0] = 1
        time.sleep(60)
time.sleep(1.0)
result = 'attacker done'
"""


def test_a_program_whose_processes_die_slowly_is_not_charged_to_the_next() -> None:
    """Four children with 20,000 mappings each take the kernel a while to tear down (longer than the
    old 100 x 1 ms wait): the next programs on the worker must not be blamed for them. (Their kernel
    memory counts against memory_mb where a cgroup bounds it: 1 GB here, so that they die slowly
    rather than by the OOM killer.)"""
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=1024) as box:
        r = box.run(SLOW_DYING)
        assert r.status == "killed" and "left processes running" in r.error, r
        assert_honest(box)
        queued = box.run_many([SLOW_DYING, HONEST, HONEST, HONEST], depth=4)  # queued behind it, too
        assert queued[0].status == "killed", queued[0]
        assert all(q.ok and q.value == 42 for q in queued[1:]), queued[1:]
        assert sandbox_processes(box) == []


# --- 2. results the host cannot store ------------------------------------------------------------------------

LYING_INT = "class I(int):\n    __abs__ = lambda s: 0\n"


def forged_json(payload: str) -> str:
    """A program that makes the sandbox's own report say ``payload``: it patches json.dumps, which the
    reporting code calls after the program's code returned. The report is sealed (it is the sandbox's
    code that sends it), so only the host's own checks stand between it and the dataset."""
    return f"import json\njson.dumps = lambda *a, **k: {payload!r}\n"


@pytest.mark.parametrize(("code", "why"), [
    (LYING_INT + "result = I(10**400)", "integer outside 64 bits"),
    (LYING_INT + "result = [1, {'x': I(2**64)}]", "integer outside 64 bits"),
    (forged_json('{"status": "ok", "error": null, "value": NaN, "value_repr": null}'), "NaN"),
    (forged_json('{"status": "ok", "error": null, "value": [-Infinity], "value_repr": null}'), "-Infinity"),
    (forged_json('{"status": "ok", "error": null, "value": 1e400, "value_repr": null}'), "too large for a float"),
    (forged_json('{"status": "ok", "error": null, "value": ' + "[" * 102 + "]" * 102 + ', "value_repr": null}'),
     "nested deeper than 100"),
    (forged_json('{"status": "ok", "error": 5, "value": 1, "value_repr": null}'), "wrong shape"),
])
def test_a_result_the_host_cannot_store_is_an_error_with_a_reason(sb, code: str, why: str) -> None:
    r = sb.run(code)
    assert r.status == "error" and why in r.error and r.value is None, r
    assert_honest(sb, 1)


def test_a_plain_integer_beyond_64_bits_becomes_a_float_or_its_repr(sb) -> None:
    r = sb.run("result = 2**70")
    assert r.ok and r.value == float(2**70), r
    r = sb.run("result = 10**400")
    assert r.ok and r.value is None and r.value_repr.startswith("1000"), r


TINYGSM_Q = "How many apples are there?"


def test_verification_keeps_going_past_hostile_values_and_builds_its_table(sb, tmp_path: Path) -> None:
    """verify_problems over samples that return a lying big integer, raise with a lone surrogate, or
    return strings full of them: no exception, every sample recorded with a reason, and the samples
    table (what a TinyGSM build writes) goes to Parquet and back."""
    def sol(body: str) -> str:
        return f"def simple_math_problem():\n{body}"

    record = {"id": "0" * 16, "question": TINYGSM_Q, "solutions": [
        sol("    class I(int):\n        __abs__ = lambda s: 0\n    return I(10**400)\n"),
        sol("    raise ValueError('\\ud800 bad \\udfff')\n"),
        sol("    return '\\ud800'\n"),
        sol("    class R:\n        def __repr__(self):\n            return 'r\\udc80'\n    return R()\n"),
        sol("    return 7\n"),
        sol("    return 3 + 4\n"),
    ]}
    samples: list[dict] = []
    kept, rejected = verify_problems([record], sb, 0.3, samples)
    assert len(kept) == 1 and kept[0]["answer"] == 7 and rejected == []
    statuses = [s["status"] for s in kept[0]["samples"]]
    assert statuses == ["error", "error", "non_numeric", "non_numeric", "ok", "ok"], statuses
    errors = [s["error"] for s in kept[0]["samples"]]
    assert "outside 64 bits" in errors[0] and errors[1] == "ValueError: \ufffd bad \ufffd", errors
    assert "\ufffd" in errors[3], errors
    pq.write_table(samples_frame(samples).to_arrow(), tmp_path / "samples.parquet")
    back = pq.read_table(tmp_path / "samples.parquet").to_pylist()
    assert [r["status"] for r in back] == statuses and back[1]["error"] == errors[1]


# --- 3. lone surrogates ---------------------------------------------------------------------------------------


def test_every_string_from_the_result_channel_is_valid_utf8(sb) -> None:
    cases = {
        "raise ValueError('\\ud800')": ("error", None, "ValueError: \ufffd"),
        "result = '\\ud800x\\udfff'": ("ok", "\ufffdx\ufffd", None),
        "result = {'\\udc80': ['a\\ud800b']}": ("ok", {"\ufffd": ["a\ufffdb"]}, None),
        "result = '\\ud83d\\ude00'": ("ok", "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"), None),
    }
    for code, (status, value, error) in cases.items():
        r = sb.run(code)
        assert (r.status, r.value, r.error) == (status, value, error), (code, r)
        for text in (r.error, r.value_repr, json.dumps(r.value, ensure_ascii=False), r.stderr):
            (text or "").encode("utf-8")  # raises if not valid UTF-8
    repr_case = sb.run("class R:\n    def __repr__(self):\n        return '\\ud800'\nresult = R()")
    assert repr_case.ok and repr_case.value_repr == "\ufffd", repr_case
    assert_honest(sb, 1)


# --- 4. ok cannot be forged ---------------------------------------------------------------------------------

REPORT = json.dumps({"status": "ok", "error": None, "value": 42, "value_repr": None})
FORGERIES = {
    "report then os._exit(0)": f"import os\nos.write(3, {REPORT!r}.encode())\nos._exit(0)\nassert False",
    "report then SIGKILL": f"import os, signal\nos.write(3, {REPORT!r}.encode())\nos.kill(os.getpid(), signal.SIGKILL)",
    "report then a segfault": f"import ctypes, os\nos.write(3, {REPORT!r}.encode())\nctypes.string_at(0)",
    "report on every descriptor": (f"import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, {REPORT!r}.encode())\n"
                                   "    except OSError:\n        pass\nos._exit(0)"),
    "a HumanEval-style check that never runs": (
        "def add(a, b):\n    import os\n"
        f"    os.write(3, {REPORT!r}.encode())\n    os._exit(0)\n"
        "def check(candidate):\n    assert candidate(1, 2) == 4\n"
        "check(add)\n"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_ok_cannot_be_forged_by_a_report_and_an_early_end(sb, forgery: str) -> None:
    r = sb.run(FORGERIES[forgery])
    assert not r.ok and r.value is None, (forgery, r)
    assert r.status in ("error", "killed"), r
    assert_honest(sb, 1)


def test_a_program_killed_by_a_signal_after_a_clean_result_is_not_ok(sb) -> None:
    """The report is sealed, but the process then died by a signal: never ok."""
    r = sb.run("import os, signal, atexit\nresult = 1\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert r.status == "killed" and r.signal == 11 and "SIGSEGV" in r.error, r
    assert_honest(sb, 1)


def test_the_programs_main_module_is_its_own(sb) -> None:
    r = sb.run("import __main__, sys\nx = 1\nresult = [__main__.__dict__.get('x'), hasattr(__main__, 'run_child'),"
               " sys.modules['__main__'] is __main__]")
    assert r.ok and r.value == [1, False, True], r


# --- 5. CPU time, not wall time ----------------------------------------------------------------------------

SPINNERS = ("import os\n"
            "for _ in range(15):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid()\n"
            "            while True:\n                pass\n"
            "    except OSError:\n        break\n"
            "while True:\n    pass\n")
BURN_HALF_A_SECOND = ("import time\nt = time.process_time()\n"
                      "while time.process_time() - t < 0.5:\n    pass\nresult = 'done'")


def test_a_neighbours_spinning_processes_do_not_time_an_honest_program_out() -> None:
    """Beside 16 spinning processes on the other worker, a program that needs 0.5 s of CPU gets its
    0.5 s, however long that takes on the clock (within the wall-clock backstop)."""
    with Sandbox(workers=2, timeout_s=1.0, memory_mb=256) as box:
        attacker, honest = box.run_many([SPINNERS, BURN_HALF_A_SECOND], depth=1)
        assert attacker.status == "timeout" and "CPU" in attacker.error, attacker
        assert honest.ok and honest.value == "done", honest
        assert 0.45 <= honest.cpu_s < 1.0, honest
        again = box.run(BURN_HALF_A_SECOND)  # and the attacker's worker is clean
        assert again.ok, again


def test_a_sleeping_program_meets_the_wall_clock_backstop() -> None:
    with Sandbox(workers=1, timeout_s=0.5, wall_timeout_s=1.5) as box:
        r = box.run("import time\ntime.sleep(30)")
        assert r.status == "timeout" and "wall-clock" in r.error and r.cpu_s < 0.5, r
        assert 1.5 <= r.duration_s, r
        assert box.run(HONEST).value == 42


# --- 6. a uid per worker launch -----------------------------------------------------------------------------

HOLD_THE_QUOTA = ("import os, time\nheld = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
                  "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
                  "    held += 1\nprint(held, flush=True)\ntime.sleep(4)\nresult = held")
FORKS = ("import os\npid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
         "result = os.WEXITSTATUS(os.waitpid(pid, 0)[1])")


def _uid_processes(uid: int) -> int:
    n = 0
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and f"\nUid:\t{uid}\t" in Path(f"/proc/{entry}/status").read_text():
                n += 1
        except OSError:
            pass
    return n


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are dropped to on a root host; else a user namespace")
def test_a_program_holding_its_process_quota_does_not_starve_another_sandbox() -> None:
    with Sandbox(workers=1, timeout_s=10.0, nproc=8) as a, Sandbox(workers=1, timeout_s=10.0, nproc=8) as b:
        uid_a, uid_b = a._workers[0].uid, b._workers[0].uid
        assert uid_a != uid_b
        got: list = []
        thread = threading.Thread(target=lambda: got.append(a.run(HOLD_THE_QUOTA)))
        thread.start()
        deadline = time.monotonic() + 10
        while _uid_processes(uid_a) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _uid_processes(uid_a) == 8  # the attacker holds its whole quota now
        honest = b.run(FORKS)
        thread.join()
        assert honest.ok and honest.value == 7, honest
        assert got[0].status == "killed" and got[0].stdout.strip() == "7", got[0]  # 7 children, then EAGAIN
        assert b.run(FORKS).value == 7 and a.run(FORKS).value == 7


def test_a_restarted_worker_gets_a_new_uid() -> None:
    with Sandbox(workers=1) as box:
        worker = box._workers[0]
        first = worker.uid
        worker.restart()
        assert worker.uid != first and box.run(HONEST).value == 42


# --- 7. memory of a program's processes together --------------------------------------------------------

FORKED_HOGS = ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
               "        block = bytearray(90 << 20)\n        time.sleep(30)\n        os._exit(0)\n"
               "block = bytearray(90 << 20)\ntime.sleep(5)\nresult = 'all held'")
SYSV_HOARD = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
made = 0
for _ in range(10):
    sid = libc.shmget(0, 32 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if sid < 0:
        break
    at = libc.shmat(sid, None, 0)
    if at in (None, ctypes.c_void_p(-1).value):
        break
    ctypes.memset(at, 1, 32 << 20)
    libc.shmdt(ctypes.c_void_p(at))
    made += 32
result = made
"""


def test_a_programs_processes_together_stay_within_memory_mb() -> None:
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=128) as box:
        if not box.limits()["memory_cgroup"]:
            pytest.skip("this host lets us make no memory cgroup: memory is bounded per process only")
        r = box.run(FORKED_HOGS)  # five processes of 90 MB each, each within its own 128 MB
        assert r.status == "memory_exceeded" and "together" in r.error, r
        assert_honest(box)


def test_sysv_segments_count_against_memory_mb() -> None:
    """Segments created, filled and detached belong to no process: they are bounded all the same."""
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=128) as box:
        r = box.run(SYSV_HOARD)
        assert r.status == "memory_exceeded" or (r.ok and r.value <= 128), r
        assert box.limits()["memory_cgroup"] is (r.status == "memory_exceeded")
        assert_honest(box)


def test_without_a_cgroup_sysv_is_still_bounded_in_the_workers_namespace(monkeypatch) -> None:
    """What holds on a host that delegates no cgroup: the worker's own IPC limits."""
    monkeypatch.setattr(sandbox_module, "program_cgroup", lambda name, memory: ProgramCgroup())
    with Sandbox(workers=1, timeout_s=10.0, memory_mb=128) as box:
        assert box.limits() == {"memory_cgroup": False, "cpu_cgroup": False, "ipc_limited": True, "pid_counter": True}
        r = box.run(SYSV_HOARD)
        assert r.ok and r.value == 128, r  # four 32 MB segments fill the 128 MB; the fifth is refused
        slow = box.run(BURN_HALF_A_SECOND)  # CPU counted from /proc
        assert slow.ok and 0.45 <= slow.cpu_s < 1.0, slow
        assert_honest(box)


def test_cpu_time_from_a_cgroup_v2_cpu_stat(monkeypatch) -> None:
    """The v2 CPU counter (cpu.stat, in every v2 cgroup), where no v1 cpuacct hierarchy is mounted: these
    machines mount v2 without controllers beside v1, so hiding v1's cpuacct takes the v2 path."""
    from pipeline.sandbox import cgroups

    found = cgroups.hierarchies()
    if not any(h.version == 2 for h in found):
        pytest.skip("no cgroup v2 hierarchy mounted here")
    monkeypatch.setattr(cgroups, "hierarchies", lambda: [h for h in found if "cpuacct" not in h.controllers])
    with Sandbox(workers=1, timeout_s=0.3, wall_timeout_s=30.0) as box:
        worker = box._workers[0]
        assert worker.cgroup.cpu_format == "stat" and worker.cgroup.cpu.endswith("/cpu.stat"), worker.cgroup
        done = box.run(BURN_HALF_A_SECOND.replace("0.5", "0.1"))
        assert done.ok and 0.09 <= done.cpu_s < 0.3, done
        spin = box.run(SPINNERS)  # sixteen processes: their CPU adds up in the cgroup, dead ones too
        assert spin.status == "timeout" and "CPU" in spin.error and spin.cpu_s >= 0.3, spin
        assert_honest(box)


# --- hardening --------------------------------------------------------------------------------------------------

ATTEMPT = ("import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\n"
           "def attempt(f):\n    try:\n        r = f()\n        return 'allowed' if r is None or r >= 0 else ctypes.get_errno()\n"
           "    except OSError as exc:\n        return exc.errno\n")


def test_new_namespaces_exec_io_uring_vsock_and_locks_are_refused(sb) -> None:
    stdlib_file = os.__file__
    r = sb.run(ATTEMPT + (
        "import fcntl, threading, subprocess\n"
        "def exec_memfd():\n"
        "    fd = os.memfd_create('x')\n    os.write(fd, b'\\x7fELF' + bytes(60))\n"
        "    os.execv(f'/proc/self/fd/{fd}', ['x'])\n"
        "def lock(how):\n    f = open(" + repr(stdlib_file) + ", 'rb')\n    return how(f)\n"
        "t = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n"
        "result = {\n"
        "  'user namespace': attempt(lambda: libc.unshare(0x10000000)),\n"
        "  'mount namespace': attempt(lambda: libc.unshare(0x20000)),\n"
        "  'clone with a new namespace': attempt(lambda: libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)),\n"
        "  'exec a memfd': attempt(exec_memfd),\n"
        "  'subprocess': attempt(lambda: subprocess.run(['/bin/true'])),\n"
        "  'io_uring_setup': attempt(lambda: libc.syscall(425, 1, ctypes.create_string_buffer(120))),\n"
        "  'vsock': attempt(lambda: socket.socket(40, socket.SOCK_STREAM)),\n"
        "  'flock': attempt(lambda: lock(lambda f: fcntl.flock(f, fcntl.LOCK_SH))),\n"
        "  'lockf': attempt(lambda: lock(lambda f: fcntl.lockf(f, fcntl.LOCK_SH))),\n"
        "  'fork': attempt(lambda: os.waitpid(os.fork() or os._exit(0), 0) and None),\n"
        "  'a thread': 'allowed',\n"
        "  'an inet socket': attempt(lambda: socket.socket().close()),\n"
        "}\n"))
    assert r.ok, r
    eperm = errno.EPERM
    assert r.value == {"user namespace": eperm, "mount namespace": eperm, "clone with a new namespace": eperm,
                       "exec a memfd": eperm, "subprocess": eperm, "io_uring_setup": eperm, "vsock": eperm,
                       "flock": eperm, "lockf": eperm, "fork": "allowed", "a thread": "allowed",
                       "an inet socket": "allowed"}, r.value
    assert_honest(sb, 1)


def test_every_program_starts_from_the_same_pid(sb) -> None:
    """No program can count the processes earlier ones made (a covert channel between programs)."""
    first = sb.run("import os\nresult = os.getpid()\nfor _ in range(40):\n    pid = os.fork()\n"
                   "    if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)")
    second = sb.run("import os\nresult = os.getpid()")
    assert first.ok and second.ok and first.value == second.value == 2, (first, second)


def test_no_host_path_in_the_workers_command_line_or_the_cgroups() -> None:
    """On the user-namespace path a program shares the worker's uid and may read /proc/1/cmdline; and
    /proc/self/cgroup would name the host's cgroups (a container's id) without a cgroup namespace."""
    host_cgroups = [line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()]
    host_paths = [p for p in host_cgroups if p not in ("/", "")]
    with Sandbox(workers=1, user_namespace=True) as box:
        r = box.run("result = [open('/proc/1/cmdline', 'rb').read().decode(), open('/proc/self/cgroup').read()]")
    assert r.ok, r
    cmdline, cgroups = r.value
    assert str(REPO) not in cmdline and str(sandbox_module.SERVER) not in cmdline, cmdline
    assert "expose_dirs" not in cmdline and "timeout_s" not in cmdline, cmdline  # nor its config
    assert not any(p in cgroups for p in host_paths), (host_paths, cgroups)
