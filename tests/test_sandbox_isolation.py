"""What a program sees and what it leaves behind.

- the whole standard library imports, pure-Python and C extensions alike;
- the filesystem is only what Python needs: no host file, however readable;
- every program starts clean: nothing an earlier one wrote on the same
  worker survives, in any writable place;
- kernel objects are private: SysV IPC, keyrings, the hostname; no new
  privileges (no_new_privs, seccomp);
- the non-root path (a user namespace, a namespace root without
  capabilities) holds the same properties, tested by forcing it as root.

One-worker sandboxes throughout, so "a later program" runs on the very
worker the earlier one did.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipeline.sandbox import Sandbox
from tests.conftest import REPO

STDLIB_SAMPLE = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "binascii", "bisect", "bz2", "calendar", "cmath",
    "codecs", "collections", "concurrent.futures", "contextlib", "copy", "csv", "ctypes", "dataclasses",
    "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools", "gzip", "hashlib", "heapq",
    "hmac", "html", "inspect", "io", "ipaddress", "itertools", "json", "logging", "lzma", "math", "mmap",
    "multiprocessing", "numbers", "operator", "pathlib", "pickle", "pprint", "queue", "random", "re",
    "secrets", "select", "shlex", "shutil", "socket", "sqlite3", "ssl", "statistics", "string", "struct",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tomllib", "typing",
    "unicodedata", "unittest", "urllib.parse", "uuid", "xml.etree.ElementTree", "zipfile", "zlib", "zoneinfo",
    "_ssl", "_hashlib", "_sqlite3", "_ctypes", "_lzma", "_bz2", "_decimal", "_uuid", "_multiprocessing",
    "_posixshmem", "_elementtree", "pyexpat", "readline", "_curses", "_tkinter",
)
# Modules of sys.stdlib_module_names whose import does something: opens a web browser, prints a poem.
IMPORT_SIDE_EFFECTS = {"antigravity", "this"}
IMPORT_ALL = (
    "import importlib, sys\n"
    f"skip = {sorted(IMPORT_SIDE_EFFECTS)!r}\n"
    "ok = []\n"
    "for name in sorted(sys.stdlib_module_names):\n"
    "    if name in skip:\n        continue\n"
    "    try:\n        importlib.import_module(name)\n        ok.append(name)\n"
    "    except BaseException:\n        pass\n"
    "result = ok\n"
)
WRITABLE = (".", "~", "/tmp", "/var/tmp", "/dev/shm")


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=1, timeout_s=20.0, memory_mb=512) as sb:
        yield sb


def stdlib_dirs() -> list[str]:
    """sys.path of the interpreter the workers run (python -I -S): what the sandbox must show."""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys, json; print(json.dumps(sys.path))"],
                         capture_output=True, text=True, check=True).stdout
    return [p for p in json.loads(out) if os.path.isdir(p)]


# --- 1. the standard library imports --------------------------------------------------------------


def test_a_broad_sample_of_the_standard_library_imports_and_works(sb) -> None:
    code = (
        "import importlib\nfailed = {}\n"
        f"for name in {STDLIB_SAMPLE!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except BaseException as exc:\n        failed[name] = repr(exc)\n"
        "import hashlib, sqlite3, zlib, bz2, lzma, ssl, unicodedata, uuid, zoneinfo, ctypes, decimal, statistics\n"
        "db = sqlite3.connect(':memory:')\n"
        "works = [hashlib.sha256(b'x').hexdigest()[:8], hashlib.md5(b'x').hexdigest()[:8],\n"
        "         db.execute('select 6 * 7').fetchone()[0],\n"
        "         all(m.decompress(m.compress(b'abc' * 100)) == b'abc' * 100 for m in (zlib, bz2, lzma)),\n"
        "         ssl.OPENSSL_VERSION.split()[0], unicodedata.name('\\u00e9'), len(str(uuid.uuid4())),\n"
        "         str(zoneinfo.ZoneInfo('Europe/Paris')), ctypes.sizeof(ctypes.c_int),\n"
        "         str(decimal.Decimal(1) / decimal.Decimal(7))[:6], statistics.median([3, 1, 2])]\n"
        "result = [failed, works]"
    )
    r = sb.run(code)
    assert r.ok, r
    failed, works = r.value
    assert failed == {}
    assert works == ["2d711642", "9dd4e461", 42, True, "OpenSSL", "LATIN SMALL LETTER E WITH ACUTE", 36,
                     "Europe/Paris", 4, "0.1428", 2]


def test_every_module_that_imports_on_the_host_imports_in_the_sandbox(sb) -> None:
    """The same interpreter, outside the sandbox and inside: the same modules of sys.stdlib_module_names
    import (on a root host, as an unprivileged uid, through the sandbox's own view of the filesystem)."""
    host = subprocess.run([sys.executable, "-I", "-S", "-c", IMPORT_ALL + "print(__import__('json').dumps(result))"],
                          capture_output=True, text=True, cwd="/", env={}, timeout=120, check=True)
    on_host = set(json.loads(host.stdout.splitlines()[-1]))
    r = sb.run(IMPORT_ALL)
    assert r.ok, r
    assert len(on_host) > 150
    assert sorted(on_host - set(r.value)) == []


# --- 3. the sandbox sees only what Python needs --------------------------------------------------------


@pytest.fixture
def host_secret():
    """A file any user may read (0644, in a 0755 directory of the checkout), holding a fake key."""
    directory = REPO / "build" / f"sandbox-secret-{uuid.uuid4().hex}"
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    secret = directory / "api_key.txt"
    secret.write_text("sk-fake-" + uuid.uuid4().hex)
    secret.chmod(0o644)
    try:
        yield secret
    finally:
        secret.unlink()
        directory.rmdir()


def test_host_files_readable_by_anyone_are_not_visible(sb, host_secret: Path) -> None:
    paths = [str(host_secret), str(host_secret.parent), str(REPO), str(REPO / "pyproject.toml"), "/etc/passwd",
             "/etc/hostname", "/etc/hosts", "/home", "/sys", "/work", sys.executable,
             os.path.join(os.path.dirname(os.__file__), "site-packages", "pip")]
    code = ("import os\nseen = {}\n"
            f"for p in {paths!r}:\n"
            "    try:\n"
            "        seen[p] = sorted(os.listdir(p)) if os.path.isdir(p) else open(p, 'rb').read(100).decode(errors='replace')\n"
            "    except OSError as exc:\n        seen[p] = type(exc).__name__\n"
            "result = seen")
    r = sb.run(code)
    assert r.ok, r
    assert r.value == {p: "FileNotFoundError" for p in paths}


def test_the_whole_view_is_the_interpreter_its_libraries_devices_and_scratch(sb) -> None:
    """Walk everything the sandbox shows (but /proc): every file belongs to the standard library, is a
    shared library or the loader's cache, time-zone data, one of four devices, or the program's own."""
    code = (
        "import os\nfiles = []\n"
        "for top, dirs, names in os.walk('/'):\n"
        "    if top == '/':\n        dirs.remove('proc')\n"
        "    files += [os.path.join(top, n) for n in names]\n"
        "result = [os.getcwd(), sorted(os.listdir('/')), sorted(os.listdir('/dev')), files]"
    )
    r = sb.run(code)
    assert r.ok, r
    cwd, top, dev, files = r.value
    assert set(top) <= {"dev", "etc", "lib", "lib64", "proc", "root", "tmp", "usr", "var", "bin", "sbin"}
    assert sorted(dev) == ["fd", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"]
    allowed = tuple(d + "/" for d in stdlib_dirs()) + ("/usr/share/zoneinfo/", "/dev/", cwd + "/")
    strays = [f for f in files
              if not f.startswith(allowed) and ".so" not in os.path.basename(f) and f != "/etc/ld.so.cache"]
    assert strays == []
    assert not any("site-packages/" in f for f in files)  # third-party code is hidden, though it lives there
    assert len(files) > 500  # the walk did see the standard library


def test_proc_is_fresh_and_read_only(sb) -> None:
    r = sb.run("import os\nresult = [sorted(p for p in os.listdir('/proc') if p.isdigit()), os.getpid(),"
               " os.statvfs('/proc').f_flag & os.ST_RDONLY]")
    assert r.ok, r
    pids, me, read_only = r.value
    assert pids == [str(me)]  # only itself: the worker (PID 1) is hidden from the program's uid
    assert read_only


# --- 2. each program starts clean ------------------------------------------------------------------------


EACH_WRITABLE = f"for d in dict.fromkeys(os.path.realpath(os.path.expanduser(x)) for x in {WRITABLE!r}):\n"
PLANT = (
    "import os\n"
    + EACH_WRITABLE +
    "    open(os.path.join(d, 'planted-file'), 'w').write('left behind')\n"
    "    os.makedirs(os.path.join(d, 'planted-dir', 'sub'), exist_ok=True)\n"
    "    open(os.path.join(d, 'planted-dir', 'sub', 'f'), 'w').write('x')\n"
    "    os.symlink('/tmp', os.path.join(d, 'planted-link'))\n"
    "    locked = os.path.join(d, 'planted-locked')\n"
    "    os.mkdir(locked)\n"
    "    open(os.path.join(locked, 'f'), 'w').write('x')\n"
    "    os.chmod(locked, 0)\n"
    "result = os.getcwd()"
)
PROBE = (
    "import os\nseen = []\n"
    + EACH_WRITABLE +
    "    for top, dirs, names in os.walk(d):\n"
    "        seen += [os.path.join(top, n) for n in names + dirs]\n"
    "result = [os.getcwd(), seen]"
)


def test_nothing_a_program_writes_is_seen_by_the_next_on_the_same_worker(sb) -> None:
    planted = sb.run(PLANT)
    assert planted.ok, planted
    for _ in range(3):
        r = sb.run(PROBE)
        assert r.ok, r
        cwd, seen = r.value
        assert cwd != planted.value
        assert seen == [cwd]  # only its own (empty) scratch dir, seen from /tmp


def test_leftovers_are_cleared_in_a_queue_of_programs_too(sb) -> None:
    results = sb.run_many([PLANT, PROBE, PLANT, PROBE, PROBE], depth=4)
    assert all(r.ok for r in results), results
    for r in results[1::2] + results[4:]:
        cwd, seen = r.value
        assert seen == [cwd]


def test_precreated_scratch_like_dirs_do_not_break_the_next_program(sb) -> None:
    r = sb.run("import os\nfor i in range(2000):\n    os.mkdir(f'/tmp/run-{i}')\n"
               "for i in range(200):\n    os.mkdir('/tmp/run-' + os.urandom(8).hex())\nresult = 1")
    assert r.ok, r
    results = [sb.run("result = 2") for _ in range(3)]
    assert [x.value for x in results] == [2, 2, 2], results


def test_scratch_names_are_unpredictable(sb) -> None:
    names = {sb.run("import os\nresult = os.getcwd()").value for _ in range(5)}
    assert len(names) == 5
    assert all(n.startswith("/tmp/run-") and len(n) == len("/tmp/run-") + 16 for n in names)


# --- 6. private kernel objects ----------------------------------------------------------------------------

IPC_CREAT, IPC_EXCL, IPC_RMID, SHM_RDONLY = 0o1000, 0o2000, 0, 0o10000
SHM_CTYPES = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.shmat.restype = ctypes.c_void_p\n"
    "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n"
)


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    return libc


def host_segments() -> str:
    return Path("/proc/sysvipc/shm").read_text()


def test_the_hosts_sysv_shared_memory_is_invisible(sb) -> None:
    libc = _libc()
    key = int.from_bytes(os.urandom(3), "big") + 1
    marker = f"host-shm-{uuid.uuid4().hex}".encode()
    shmid = libc.shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0o644)  # readable by any uid
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    addr = libc.shmat(shmid, None, 0)
    ctypes.memmove(addr, marker, len(marker))
    try:
        r = sb.run(SHM_CTYPES + (
            f"by_key = libc.shmget({key}, 0, 0)\n"
            f"addr = libc.shmat({shmid}, None, {SHM_RDONLY})\n"
            "by_id = ctypes.string_at(addr, 64) if addr not in (None, ctypes.c_void_p(-1).value) else None\n"
            "result = [by_key, repr(by_id), open('/proc/sysvipc/shm').read()]"))
        assert r.ok, r
        by_key, by_id, listing = r.value
        assert by_key == -1 and by_id == "None"
        assert marker.decode() not in r.stdout + listing + by_id
        assert listing.count("\n") == 1  # the header line only: no segment at all
    finally:
        libc.shmdt(ctypes.c_void_p(addr))
        libc.shmctl(shmid, IPC_RMID, None)


def test_a_programs_ipc_objects_do_not_outlive_it() -> None:
    """SysV shared memory, semaphores and message queues, and a POSIX message queue, made by one program:
    none is there for the next program on the same worker, nor ever in the host's IPC namespace."""
    key = int.from_bytes(os.urandom(3), "big") + 1
    queue = f"/tinyforge-{uuid.uuid4().hex[:8]}"
    create = SHM_CTYPES + (
        f"shmid = libc.shmget({key}, 4096, {IPC_CREAT | 0o666})\n"
        "addr = libc.shmat(shmid, None, 0)\nctypes.memmove(addr, b'left behind', 11)\n"
        f"semid = libc.semget({key}, 1, {IPC_CREAT | 0o666})\n"
        f"msgid = libc.msgget({key}, {IPC_CREAT | 0o666})\n"
        f"mq = libc.mq_open({queue.encode()!r}, os.O_CREAT | os.O_RDWR, 0o666, None)\n"
        "result = [shmid, semid, msgid, mq]")
    probe = SHM_CTYPES + (
        f"found = [libc.shmget({key}, 0, 0), libc.semget({key}, 0, 0), libc.msgget({key}, 0),"
        f" libc.mq_open({queue.encode()!r}, os.O_RDONLY)]\n"
        "result = [found, [open(f'/proc/sysvipc/{k}').read().count('\\n') for k in ('shm', 'sem', 'msg')]]")
    with Sandbox(workers=1, timeout_s=5.0) as box:
        for _ in range(2):
            made = box.run(create)
            assert made.ok and min(made.value) >= 0, made
            later = box.run(probe)
            assert later.ok and later.value == [[-1, -1, -1, -1], [1, 1, 1]], later  # header lines only
    for kind in ("shm", "sem", "msg"):
        assert f" {key} " not in Path(f"/proc/sysvipc/{kind}").read_text()  # never in the host's namespace


KEYCTL = (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "NR = {'x86_64': (248, 249, 250), 'aarch64': (217, 218, 219)}[os.uname().machine]\n"
    "def add_key(desc, payload, ring):\n"
    "    r = libc.syscall(ctypes.c_long(NR[0]), b'user', desc, payload, ctypes.c_long(len(payload)), ctypes.c_long(ring))\n"
    "    return r if r >= 0 else -ctypes.get_errno()\n"
    "def keyctl(op, *args):\n"
    "    r = libc.syscall(ctypes.c_long(NR[2]), ctypes.c_long(op), *[a if a is None or isinstance(a, bytes) else ctypes.c_long(a) for a in args])\n"
    "    return r if r >= 0 else -ctypes.get_errno()\n"
    "def read_key(serial):\n"
    "    buf = ctypes.create_string_buffer(4096)\n"
    "    n = libc.syscall(ctypes.c_long(NR[2]), ctypes.c_long(11), ctypes.c_long(serial), buf, ctypes.c_long(4096))\n"
    "    return buf.raw[:n].decode(errors='replace') if n >= 0 else -ctypes.get_errno()\n"
    "def proc_keys():\n"
    "    try:\n        return open('/proc/keys').read()\n"
    "    except OSError as exc:\n        return repr(exc)\n"
)
KEY_SPEC_SESSION, KEY_SPEC_USER = -3, -4


def test_the_hosts_session_keyring_is_out_of_reach(tmp_path: Path) -> None:
    """A key the host process put in its session keyring, which the workers inherit at start: a program
    can read it neither through its own session keyring nor by the key's serial number."""
    marker = f"host-key-{uuid.uuid4().hex}"
    host = tmp_path / "host.py"
    host.write_text(KEYCTL + (
        "import json, sys\n"
        "assert keyctl(1, None) > 0  # a new session keyring for this process, which the workers inherit\n"
        f"serial = add_key(b'tinyforge-test', {marker.encode()!r}, {KEY_SPEC_SESSION})\n"
        "assert serial > 0, serial\n"
        "from pipeline.sandbox import Sandbox\n"
        "with Sandbox(workers=1) as sb:\n"
        "    r = sb.run(" + repr(KEYCTL) + " + f'result = [read_key({serial}), read_key(-3), proc_keys()]')\n"
        "print(json.dumps([serial, read_key(serial), r.status, r.value, r.error]))\n"))
    out = subprocess.run([sys.executable, str(host)], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})  # this checkout's pipeline package
    assert out.returncode == 0, out.stderr
    serial, on_host, status, value, error = json.loads(out.stdout.splitlines()[-1])
    assert on_host == marker  # the key is really there, for the host
    assert status == "ok", error
    assert marker not in json.dumps(value)
    assert value[0] < 0 and value[1] < 0


def test_a_key_a_program_adds_is_not_seen_by_the_next(sb) -> None:
    marker = f"program-key-{uuid.uuid4().hex}"
    add = sb.run(KEYCTL + f"result = [add_key({marker.encode()!r}, b'secret', r) for r in ({KEY_SPEC_USER}, {KEY_SPEC_SESSION})]")
    assert add.ok, add
    look = sb.run(KEYCTL + "result = [proc_keys(), read_key(-4), read_key(-3)]")
    assert look.ok, look
    assert marker not in json.dumps(look.value)
    assert all(v < 0 for v in add.value), add.value  # the keyring syscalls are refused outright


def test_no_new_privileges_and_the_seccomp_filter_are_on(sb) -> None:
    r = sb.run("import os\nresult = [os.getuid(), open('/proc/self/status').read()]")
    assert r.ok, r
    uid, status = r.value
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"
    assert fields["CapEff"].strip() == "0" * 16
    if os.geteuid() == 0:
        assert uid == sb._workers[0].uid >= 1 << 30  # its launch's own uid, not a user's


def test_the_hostname_is_the_sandboxs_own(sb) -> None:
    """The worker names its own UTS namespace; the host's name neither shows inside nor changes."""
    host_name = socket.gethostname()
    r = sb.run("import socket\ntry:\n    socket.sethostname('pwned')\n    changed = True\n"
               "except OSError:\n    changed = False\nresult = [socket.gethostname(), changed]")
    assert r.ok and r.value == ["tinyforge-sandbox", False], r
    assert socket.gethostname() == host_name != "tinyforge-sandbox"


# --- the non-root path, forced on this root host ---------------------------------------------------------------


def test_the_user_namespace_path_holds_the_same_properties(host_secret: Path) -> None:
    """A non-root host runs the workers under `unshare --user --map-root-user`: the program is the
    namespace's root, so it must have no capability there, and the view must be as tight."""
    code = (
        "import os, hashlib, sqlite3, ssl, ctypes\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
        "def attempt(f):\n    try:\n        f()\n        return 'done'\n    except OSError as exc:\n        return exc.errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "mounted = libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None)\n"
        f"result = [os.getuid(), status['CapEff'].strip(), status['CapBnd'].strip(), status['NoNewPrivs'].strip(),"
        f" os.path.exists({str(host_secret)!r}), os.path.exists('/etc/passwd'),"
        " attempt(lambda: open(os.__file__, 'a')), attempt(lambda: __import__('socket').sethostname('pwned')), mounted,"
        " hashlib.sha256(b'x').hexdigest()[:8]]"
    )
    with Sandbox(workers=1, timeout_s=10.0, user_namespace=True) as box:
        r = box.run(code)
        assert r.ok, r
        assert r.value == [0, "0" * 16, "0" * 16, "1", False, False, 30, 1, -1, "2d711642"]  # EROFS, EPERM, no mount
        # it shares its uid with the worker (PID 1) but not the worker's capabilities
        poke = box.run(
            "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "def attempt(f):\n    try:\n        f()\n        return 'done'\n    except OSError as exc:\n        return exc.errno\n"
            "traced = libc.ptrace(16, 1, None, None)  # PTRACE_ATTACH\n"
            "result = [attempt(lambda: open('/proc/1/environ').read()), attempt(lambda: open('/proc/1/mem', 'rb')),"
            " attempt(lambda: open('/proc/1/fd/0', 'rb')), attempt(lambda: os.readlink('/proc/1/fd/0')), traced, ctypes.get_errno(),"
            " [attempt(lambda s=s: os.kill(1, s)) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)]]")
        assert poke.ok, poke
        # EACCES (the request pipe too); EPERM; signals sent but dropped: PID 1 handles none
        assert poke.value == [13, 13, 13, 13, -1, 1, ["done"] * 3], poke.value
        assert box.run("result = 'still here'").value == "still here"
        planted = box.run(PLANT)
        probe = box.run(PROBE)
        assert planted.ok and probe.ok and probe.value[1] == [probe.value[0]], (planted, probe)
