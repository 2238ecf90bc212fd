"""The sandbox worker: runs inside fresh network, PID, mount, IPC and UTS namespaces.

Started by ``pipeline.sandbox.Sandbox`` as ``unshare ... python -I -S _server.py CONFIG``;
it imports nothing outside the standard library and never reads the host's
environment. It is PID 1 of its own PID namespace, so every process a
program starts (daemons included) is visible in its /proc and is killed
when the program ends.

Setup, once (``build_root``): a new root on a tmpfs holding, read-only and at
their usual paths, only the interpreter's ``sys.path`` directories, the
shared libraries its extension modules load, the time-zone data and four
devices; fresh tmpfs on /tmp, /var/tmp and /dev/shm (the only writable
places); a fresh read-only /proc. The worker pivots into it and detaches the
host's root, so nothing else of the host exists for a program. Then it
imports ``PRELOADED`` (children inherit them for free) and says hello.

Protocol (both directions): a frame is ``HEAD`` (two big-endian u32: header
length, body length), a JSON header, then the body.

- hello, worker to host: ``{"ready": true, "pid": N}`` or ``{"fatal": why}``, no body;
- request, host to worker: ``{"id": N, "timeout_s": T}``, body the program's UTF-8 source;
- reply, worker to host: ``{"id": N, "verdict", "note", "exit_code", "signal",
  "duration_s", "stdout": n1, "stderr": n2, "result": n3}``, body the three
  byte streams back to back: stdout, stderr and the child's JSON report.

The worker reads exactly one request from fd 0 with ``os.read`` (never a
buffered file), so requests queued behind it stay in the kernel's pipe where
no program can reach them. It never decodes what a program produced: the
streams go into fixed buffers that are wiped after each reply, and the host
validates the report. So no program's source or output lingers in the
memory the next child is forked from.

The worker itself sets no_new_privs and a seccomp filter against the
keyring syscalls, which every child inherits.

Per request: fork a child that starts a new session, joins a fresh session
keyring, drops to an unprivileged uid (or, under a user namespace, drops
every capability), sets rlimits, clears the environment, chdirs into a
fresh scratch dir and execs the program. The worker enforces the wall clock
and the byte caps, kills everything left in the namespace, empties the
writable places and the IPC namespace, and replies.
"""

from __future__ import annotations

import _signal
import ctypes
import json
import math
import mmap
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

HEAD = struct.Struct("!II")  # header length, body length
MAX_HEADER = 1 << 16
MAX_DEPTH = 100  # deepest JSON nesting a result may have; the host enforces the same bound

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}  # plus HOME and TMPDIR, per program
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
HIDDEN_SUBDIRS = ("site-packages", "dist-packages")  # third-party code is not the standard library
# What the worker imports before it says hello; every child inherits these for free. The trade-off,
# measured by benchmarks/sandbox_fork.py: a module imported in a child costs 1-10 ms, but each one preloaded
# makes every fork and exit a little dearer (more memory mappings, more heap to copy-on-write). So the
# list is the stdlib that math solutions and HumanEval-style code import, and nothing that costs every
# program something: no `subprocess` (it imports `threading`, whose after-fork hook runs in every
# child), no `socket` (20 mappings; there is no network to use). `_ast` is there because compile()
# builds its node types on first use: 2 ms a program otherwise.
PRELOADED = (
    "_ast", "abc", "array", "bisect", "calendar", "cmath", "collections", "contextlib", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "functools", "heapq", "itertools", "json", "math", "numbers",
    "operator", "random", "re", "statistics", "string", "struct", "textwrap", "time", "typing",
)
SIGNAL_STATUS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "output_exceeded"}

# Syscall numbers the filter and the setup need, and the seccomp audit arch, per machine. The generic
# table (aarch64, riscv64) shares its numbers; io_uring's are the same everywhere.
_GENERIC = {"pivot_root": 41, "add_key": 217, "request_key": 218, "keyctl": 219, "execve": 221, "execveat": 281,
            "unshare": 97, "setns": 268, "clone": 220, "clone3": 435, "socket": 198, "fcntl": 25, "flock": 32}
ARCH = {
    "x86_64": {"audit": 0xC000003E, "pivot_root": 155, "add_key": 248, "request_key": 249, "keyctl": 250,
               "execve": 59, "execveat": 322, "unshare": 272, "setns": 308, "clone": 56, "clone3": 435,
               "socket": 41, "fcntl": 72, "flock": 73},
    "aarch64": {"audit": 0xC00000B7, **_GENERIC},
    "riscv64": {"audit": 0xC00000F3, **_GENERIC},
}
IO_URING = (425, 426, 427)  # io_uring_setup, io_uring_enter, io_uring_register
CLONE_NEW_ANY = 0x7E020080  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET,TIME}
AF_VSOCK = 40
FCNTL_LOCKS = (5, 6, 7, 36, 37, 38)  # F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW
KEYCTL_JOIN_SESSION_KEYRING = 1
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 24, 28, 38, 22, 47
SECBITS_LOCKED_NOROOT = 0xE3  # NOROOT, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE, each locked where it can be
SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


_SYSCALLS = ARCH.get(os.uname().machine, {})


def _syscall(name: str, *args) -> int:
    # syscall(2) is variadic and the kernel reads full registers: pass integers as C longs
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _check(_libc.syscall(ctypes.c_long(_SYSCALLS[name]), *args), name)


def _prctl(option: int, arg2: int = 0, pointer=None) -> int:
    """prctl(2), variadic too: every argument at full width."""
    arg3 = ctypes.c_ulong(0) if pointer is None else pointer
    return _libc.prctl(option, ctypes.c_ulong(arg2), arg3, ctypes.c_ulong(0), ctypes.c_ulong(0))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _umount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


# --- the filesystem a program sees ---------------------------------------------------------

_ST_TO_MS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))


def _mount_flags(path: str) -> int:
    """The per-mount flags of ``path``'s mount. Under a user namespace the kernel locks them
    (a remount that drops one fails), so a read-only remount must repeat them."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def _bind_readonly(source: str, target: str, device: bool = False) -> None:
    _mount(source, target, None, MS_BIND)  # not MS_REC: mounts below `source` stay out of view
    flags = _mount_flags(target) | MS_NOSUID | (0 if device else MS_NODEV)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def _makedirs(root: str, path: str) -> None:
    """Create ``root + path`` and its parents, each 0755 so a program's uid can walk to what is bound there
    (the host's own parents may be closed to it: /root is 0700)."""
    current = root
    for part in [p for p in path.split("/") if p]:
        current = f"{current}/{part}"
        if not os.path.lexists(current):
            os.mkdir(current)
            os.chmod(current, 0o755)


def _mirror(root: str, path: str) -> str | None:
    """Recreate under ``root`` the symlinks on the way to ``path`` (the dynamic loader looks libraries up as
    /lib/x86_64-linux-gnu/..., and /lib may be a link to usr/lib); return the real path, or None if missing."""
    real, todo, hops = "/", [p for p in path.split("/") if p], 0
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            real = os.path.dirname(real)
            continue
        here = os.path.join(real, name)
        if not os.path.islink(here):
            real = here
            continue
        hops += 1
        if hops > 40:
            return None
        target = os.readlink(here)
        if not os.path.lexists(root + here):
            _makedirs(root, real)
            os.symlink(target, root + here)
        todo = [p for p in target.split("/") if p] + todo
        if target.startswith("/"):
            real = "/"
    return real if os.path.exists(real) else None


def _expose(root: str, path: str, covered: list[str], device: bool = False) -> None:
    """Make ``path`` visible, read-only, at the same place under ``root`` (once: skip what a bound
    directory already shows)."""
    real = _mirror(root, path)
    if real is None or any(real == c or real.startswith(c + "/") for c in covered):
        return
    target = root + real
    if os.path.isdir(real):
        _makedirs(root, real)
        covered.append(real)
    else:
        _makedirs(root, os.path.dirname(real))
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    _bind_readonly(real, target, device=device)


def _fresh_tmpfs(path: str, size_mb: int) -> None:
    # noexec: a program cannot load code it wrote; nr_inodes bounds the kernel memory empty files can take
    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={size_mb}m,nr_inodes=16384,mode=1777")


def _staging_dir(exposed: list[str]) -> str:
    """An existing directory of the host to mount the new root on: one no exposed path lives under."""
    for d in ("/tmp", "/mnt", "/media", "/srv", "/opt", "/var/tmp"):
        if os.path.isdir(d) and not os.path.islink(d) and not any(p == d or p.startswith(d + "/") for p in exposed):
            return d
    raise RuntimeError("no directory to build the sandbox's root on")


def build_root(cfg: dict) -> None:
    """Replace this mount namespace's view with only what Python needs, then pivot into it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do here propagates to the host
    dirs, files = list(cfg["expose_dirs"]), list(cfg["expose_files"])
    root = _staging_dir(dirs + files)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    _populate(root, dirs, files, int(cfg["scratch_mb"]))
    _enter(root)


def _populate(root: str, dirs: list[str], files: list[str], scratch_mb: int) -> None:
    covered: list[str] = []
    for path in sorted(dirs, key=len):  # parents first, so a child directory is seen as covered
        _expose(root, path, covered)
    for path in files:
        _expose(root, path, covered)
    for d in list(covered):
        for name in HIDDEN_SUBDIRS:
            if os.path.isdir(os.path.join(d, name)):
                _mount("tmpfs", root + os.path.join(d, name), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       "size=4k,nr_inodes=1,mode=0755")

    _makedirs(root, "/dev")
    for dev in DEVICES:
        _expose(root, dev, covered, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for path in WRITABLE:
        _makedirs(root, path)
        _fresh_tmpfs(root + path, scratch_mb)
    # Our own /proc: only this PID namespace's processes; hidepid=2 hides the worker from a program's uid;
    # read-only, so not even a namespace root can write a sysctl through it.
    _makedirs(root, "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "hidepid=2")


def _enter(root: str) -> None:
    """Make ``root`` the root and detach the host's, with every host mount under it."""
    os.chdir(root)
    _syscall("pivot_root", b".", b".")  # the old root is now stacked on top of the new one ...
    _umount(".")  # ... and detached
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    try:
        open("/.tinyforge-write-probe", "w").close()
    except OSError:
        pass
    else:
        raise RuntimeError("the sandbox's root is still writable")


def empty_dir_size() -> int | None:
    """The st_size of an empty directory on our tmpfs, if st_size there grows with every entry (tmpfs
    counts 20 bytes an entry): then one stat() tells an empty place from a used one. Checked, not
    assumed; None (list the directory instead) where it does not hold."""
    empty = os.stat("/tmp").st_size
    probe = f"/tmp/.probe-{os.getpid()}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
    grown = os.stat("/tmp").st_size
    os.unlink(probe)
    return empty if grown > empty == os.stat("/tmp").st_size else None


def _is_empty(path: str, empty_size: int | None) -> bool:
    return os.stat(path).st_size == empty_size if empty_size is not None else not os.listdir(path)


def reset_writable(scratch: str | None, size_mb: int, empty_size: int | None) -> None:
    """Leave nothing of a program for the next one: remove its scratch dir, and replace any writable
    tmpfs that still holds something. Usually nothing was written, and that costs an rmdir and three
    stat()s. A program that wrote files costs a fresh tmpfs, never a walk over what it left (which
    could be deep, or full of symlinks, and shutil would cost every fork its 30 memory mappings)."""
    if scratch is not None:
        try:
            os.rmdir(scratch)
        except OSError:
            pass  # not empty: it keeps /tmp non-empty below, and /tmp is replaced
    for path in WRITABLE:
        if not _is_empty(path, empty_size):
            _umount(path)
            _fresh_tmpfs(path, size_mb)


def new_scratch(uid: int | None) -> str:
    """A scratch dir with an unpredictable name: a program cannot prepare the next one's. (os.urandom is
    what secrets.token_hex uses; importing secrets would load OpenSSL into the worker, and every fork and
    exit would pay for its mappings.)"""
    while True:
        scratch = f"/tmp/run-{os.urandom(8).hex()}"
        try:
            os.mkdir(scratch, 0o700)
            break
        except FileExistsError:
            continue
    if uid is not None:
        os.chown(scratch, uid, uid)
    return scratch


# --- kernel objects and privileges -------------------------------------------------------------


def join_fresh_session_keyring() -> None:
    """Leave the inherited session keyring (the host's, at first) for a new empty one.

    A kernel without keys (ENOSYS) has nothing to hide; a full key quota (EDQUOT) leaves the worker's own,
    empty keyring, which the seccomp filter keeps a program from touching anyway."""
    try:
        _syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, None)
    except OSError as exc:
        if exc.errno not in (38, 122):  # ENOSYS, EDQUOT
            raise


def drop_capabilities(last_cap: int) -> None:
    """Under a user namespace a program runs as that namespace's root: take away every capability it holds
    there (bounding, ambient, effective, permitted) and lock root's special treatment off."""
    for cap in range(last_cap + 1):
        _check(_prctl(PR_CAPBSET_DROP, cap), "PR_CAPBSET_DROP")
    _prctl(PR_CAP_AMBIENT, 4)  # PR_CAP_AMBIENT_CLEAR_ALL; EINVAL before Linux 4.3: none to clear
    _check(_prctl(PR_SET_SECUREBITS, SECBITS_LOCKED_NOROOT), "PR_SET_SECUREBITS")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each): all empty
    _check(_libc.capset(header, data), "capset")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def syscall_filter() -> _SockFprog:
    """The worker's seccomp filter, inherited by every program. It denies, with EPERM:

    - the kernel keyrings: ``add_key``, ``request_key`` and ``keyctl``, except
      ``keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`` (a new empty session keyring: what each child does
      before its program, harmless to repeat). Keyrings are per uid, not per process: without this a
      program could leave a key in its uid's user keyring for the next program run as that uid;
    - new namespaces (``unshare``, ``setns``, ``clone`` with a CLONE_NEW* flag; ``clone3``, whose flags a
      filter cannot read, fails with ENOSYS so that libc falls back to ``clone``): a user namespace
      would give a program every capability over the namespaces it then makes;
    - ``execve`` and ``execveat``: nothing is ever executed (a static binary written to a memfd included);
    - ``io_uring``, and ``socket(AF_VSOCK, ...)``: kernel surface no program needs;
    - file locks (``flock``, ``fcntl`` F_*LK): the standard library is the same read-only files for every
      worker, so a lock on one is a signal one program could send another (file-backed sqlite needs
      ``?nolock=1``; ``:memory:`` works as ever).

    Every syscall made through another ABI (i386 ``int 0x80``, x32), whose numbers would slip past these
    checks, fails too. It is a list of what no program needs, not a general syscall policy."""
    nr = ARCH[os.uname().machine]
    x32 = [("jge", 0x40000000, "deny", None)] if os.uname().machine == "x86_64" else []
    denied = [nr[n] for n in ("add_key", "request_key", "execve", "execveat", "unshare", "setns", "flock")]
    program = [
        ("ld", 4), ("jeq", nr["audit"], None, "deny"),  # seccomp_data.arch
        ("ld", 0), *x32,  # seccomp_data.nr
        *[("jeq", n, "deny", None) for n in (*denied, *IO_URING)],
        ("jeq", nr["clone3"], "nosys", None),
        ("jeq", nr["clone"], "clone", None), ("jeq", nr["socket"], "socket", None),
        ("jeq", nr["fcntl"], "fcntl", None), ("jeq", nr["keyctl"], "keyctl", "allow"),
        # args[i] is 64 bits at 16 + 8i, little-endian: the low word first
        ("label", "clone"), ("ld", 16), ("jset", CLONE_NEW_ANY, "deny", "allow"),
        ("label", "socket"), ("ld", 16), ("jeq", AF_VSOCK, "deny", "allow"),
        ("label", "fcntl"), ("ld", 24), *[("jeq", cmd, "deny", None) for cmd in FCNTL_LOCKS], ("ret", "allow"),
        ("label", "keyctl"),  # args[0] == 1 and args[1] == 0
        ("ld", 16), ("jeq", KEYCTL_JOIN_SESSION_KEYRING, None, "deny"), ("ld", 20), ("jeq", 0, None, "deny"),
        ("ld", 24), ("jeq", 0, None, "deny"), ("ld", 28), ("jeq", 0, "allow", "deny"),
        ("label", "allow"), ("ret", "allow"),
        ("label", "deny"), ("ret", "deny"),
        ("label", "nosys"), ("ret", "nosys"),
    ]
    return _assemble(program)


_RETURNS = {"allow": 0x7FFF0000, "deny": 0x00050000 | 1, "nosys": 0x00050000 | 38}  # ALLOW; ERRNO(EPERM), (ENOSYS)


def _assemble(program: list[tuple]) -> _SockFprog:
    """Classic BPF from (op, ...) tuples. Jumps name a ("label", name) further on, or None: the next
    instruction."""
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|{JEQ,JGE,JSET}|K, BPF_RET|K
    labels, at = {}, 0
    for op, *args in program:
        if op == "label":
            labels[args[0]] = at
        else:
            at += 1
    insns = []
    for op, *args in program:
        i = len(insns)
        if op == "label":
            continue
        if op == "ld":
            insns.append(_SockFilter(ld, 0, 0, args[0]))
        elif op in ("jeq", "jge", "jset"):
            k, yes, no = args
            jump = lambda label: 0 if label is None else labels[label] - i - 1  # noqa: E731
            code = {"jeq": jeq, "jge": jge, "jset": jset}[op]
            insns.append(_SockFilter(code, jump(yes), jump(no), k))
        else:
            insns.append(_SockFilter(ret, 0, 0, _RETURNS[args[0]]))
    filters = (_SockFilter * len(insns))(*insns)
    return _SockFprog(len(insns), filters)  # ctypes keeps `filters` alive: the pointer field refers to it


def install_syscall_filter() -> None:
    """Install the filter in the worker, once: every child inherits it through fork, for free (a filter
    per child would be compiled per child)."""
    _check(_prctl(PR_SET_NO_NEW_PRIVS, 1), "PR_SET_NO_NEW_PRIVS")  # inherited by every child as well
    _check(_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(syscall_filter())), "seccomp")


IPC_RMID, MSG_INFO, SHM_INFO, SEM_INFO = 0, 12, 14, 19
_INFO = (ctypes.c_int * 32)()  # large enough for struct shm_info, seminfo and msginfo
_IPC_REMOVE = {"shm": lambda i: _libc.shmctl(i, IPC_RMID, None), "sem": lambda i: _libc.semctl(i, 0, IPC_RMID),
               "msg": lambda i: _libc.msgctl(i, IPC_RMID, None)}


def open_mqueues() -> int:
    """A descriptor on this IPC namespace's POSIX message queues, reachable from no path: mounted over
    /tmp for a moment, opened, detached."""
    _mount("mqueue", "/tmp", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    _umount("/tmp")
    return fd


def _sysv_in_use() -> bool:
    """Whether any SysV object exists in this IPC namespace: three *_INFO calls, no /proc read."""
    counts = []
    for call, cmd, field in ((_libc.shmctl, SHM_INFO, 0), (_libc.msgctl, MSG_INFO, 0)):  # used_ids, msgpool
        counts.append(_INFO[field] if call(0, cmd, _INFO) >= 0 else 1)
    counts.append(_INFO[7] if _libc.semctl(0, 0, SEM_INFO, _INFO) >= 0 else 1)  # seminfo.semusz
    return any(counts)


def clear_ipc(mqueues: int) -> None:
    """Remove every SysV segment, semaphore set and message queue, and every POSIX message queue, a
    program left in the worker's IPC namespace (its own: ``unshare --ipc``)."""
    for kind, remove in _IPC_REMOVE.items() if _sysv_in_use() else ():
        with open(f"/proc/sysvipc/{kind}") as f:
            for line in f.read().splitlines()[1:]:  # a header, then one line per object: key, id, ...
                remove(int(line.split()[1]))
    for name in os.listdir(mqueues):
        os.unlink(name, dir_fd=mqueues)


# --- the child: becomes the program --------------------------------------------------------


def _shape_problem(value, max_bytes: int) -> str | None:
    """Why ``value`` cannot be a result (too deep, or surely larger than ``max_bytes`` as JSON), or None.
    Walks iteratively: a program may have raised the recursion limit and built a 100,000-deep list."""
    size, stack = 0, [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "depth"
        container = isinstance(v, (list, tuple, dict))
        size += len(v) + 2 if container or isinstance(v, str) else 1
        if size > max_bytes:  # checked before expanding a container: a 10**8-element list costs nothing
            return "size"
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for kv in v.items() for x in kv)
        elif container:
            stack.extend((x, depth + 1) for x in v)
    return None


def _json_value(value):
    """The program's ``result`` as JSON, or (None, repr) when it is not representable. By exact type:
    a subclass may override what a check would call (``__abs__``, ``__float__``). The host checks the
    value again on its side; this only turns what it would refuse into a readable repr."""
    t = type(value)
    if value is None or t is bool or t is str:
        return value, None
    if t is int:
        if -2**63 <= value < 2**63:
            return value, None
        return _as_float(value)
    if t is float:
        return (value, None) if math.isfinite(value) else (None, repr(value))
    try:
        json.dumps(value, allow_nan=False)
        return value, None
    except (TypeError, ValueError, OverflowError):
        pass
    return _as_float(value)


def _as_float(value):
    """Fraction, Decimal, an int beyond 64 bits, numpy scalars...: their float, if finite."""
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None, _short_repr(value)
    return (f, None) if type(f) is float and math.isfinite(f) else (None, _short_repr(value))


def _short_repr(value) -> str:
    try:
        return repr(value)[:200]
    except BaseException:  # a repr that raises (or is too long to make: int('9' * 5000))
        return f"<{type(value).__name__}>"


def _report(scope: dict, status: str, error: str | None, max_bytes: int) -> bytes:
    """The child's JSON report, never larger than ``max_bytes`` and never nested deeper than MAX_DEPTH."""
    value = value_repr = None
    if status == "ok" and "result" in scope:
        problem = _shape_problem(scope["result"], max_bytes)
        if problem == "depth":
            status, error = "error", f"the result is nested deeper than {MAX_DEPTH} levels"
        elif problem == "size":
            status, error = "output_exceeded", f"the result is larger than {max_bytes} bytes as JSON"
        else:
            value, value_repr = _json_value(scope["result"])
    data = json.dumps({"status": status, "error": error, "value": value, "value_repr": value_repr},
                      allow_nan=False).encode()
    if len(data) > max_bytes:
        data = json.dumps({"status": "output_exceeded", "value": None, "value_repr": None,
                           "error": f"the result is larger than {max_bytes} bytes as JSON"}).encode()
    return data


def confine(cfg: dict, scratch: str, timeout: float) -> None:
    """Everything between fork and the program's first line (no_new_privs and the seccomp filter come
    from the worker). Order matters: the keyring, charged to root's quota, comes before the uid drop."""
    os.setsid()
    join_fresh_session_keyring()
    os.chdir(scratch)
    cpu = max(1, math.ceil(timeout)) + 1  # a per-process backstop: the worker counts the CPU of them all
    mem = int(cfg["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["max_file_bytes"], cfg["max_file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_STACK, (64 * 1024 * 1024, 64 * 1024 * 1024))
    if cfg.get("uid") is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    else:
        drop_capabilities(int(cfg["last_cap"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch  # the rest is ENVIRONMENT, set once by the worker
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_DFL)  # not signal.signal: its enum wrapping costs ~50 us a call


RESULT_FD, KEY_FD = 3, 4  # in the child: where its report goes, and where its seal comes from
KEY_BYTES = 16


def _seal_and_send(data: bytes) -> None:
    """Write the report behind this run's key, read now, after the program's code is done. The key is
    in a pipe, never in this process's memory while the program runs; a report without it, or anything
    else written on the result pipe, is not the sandbox's and the worker says so."""
    key = os.read(KEY_FD, KEY_BYTES)
    view = memoryview(key + data if len(key) == KEY_BYTES else data)
    while view:
        view = view[os.write(RESULT_FD, view):]


def run_child(code: bytearray, cfg: dict, scratch: str, timeout: float, out_w: int, err_w: int, res_w: int,
              key_r: int, cgroups: list[int]) -> None:
    """Become the program. Never returns: the caller wraps it in ``os._exit``."""
    try:
        for fd in cgroups:  # first: whatever this process and its children allocate from here is the program's
            os.write(fd, b"0")
        os.dup2(res_w, RESULT_FD)
        os.dup2(key_r, KEY_FD)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the request pipe (and whatever is queued in it) is gone from this process
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(KEY_FD + 1, 1 << 16)
        confine(cfg, scratch, timeout)
        # sys.stdout/stderr already write to fds 1 and 2, which now are the
        # program's pipes; the worker flushed them before forking.
        main = type(sys)("__main__")  # the program's own module: `import __main__` is not the worker
        sys.modules["__main__"] = main
        scope = main.__dict__
    except BaseException as exc:  # setup failed: say so, never run the program unconfined
        try:
            _seal_and_send(json.dumps({"status": "error", "error": f"sandbox setup failed: {exc!r}"}).encode())
        finally:
            os._exit(70)

    status, error = "error", None
    scope["__builtins__"] = __builtins__
    try:
        exec(compile(bytes(code), "<program>", "exec"), scope)
        status = "ok"
    except MemoryError:
        status, error = "memory_exceeded", "MemoryError"
    except SystemExit as exc:
        error = f"the program called exit({exc.code!r})"
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        try:
            traceback.print_exc(limit=-5)
        except BaseException:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        try:
            data = _report(scope, status, error, int(cfg["max_result_bytes"]))
        except MemoryError:
            data = json.dumps({"status": "memory_exceeded", "error": "MemoryError while reporting the result"}).encode()
        except BaseException as exc:
            data = json.dumps({"status": "error", "error": f"the result could not be reported: {exc!r}"[:1000]}).encode()
        scope = main = None
        _seal_and_send(data)
    except BaseException:
        os._exit(71)
    os._exit(0)


# --- the worker: supervises one child at a time ---------------------------------------------


def _others() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def kill_everything_else() -> int:
    """SIGKILL every other process in this PID namespace and return once each is gone, however long the
    kernel takes to tear it down (a process with 100,000 memory mappings takes a while); return how many
    there were. Nothing of one program may be left when the next starts: its processes would count
    against the next one's quotas and be blamed on it.

    We are the namespace's init, so every other process in it is our child or re-parented to us when its
    parent dies: waiting for our children (blocking, no polling) sees each of them go."""
    found = set()
    while pids := _others():
        for pid in pids:
            found.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED)  # until the next one has been torn down, then reap it
        except ChildProcessError:  # none is ours yet: a dying parent is about to hand its children over
            time.sleep(0.001)
    return len(found)


class Streams:
    """A program's stdout, stderr and result pipes, read into buffers allocated once per worker.

    Fixed capacity (cap + 1, to notice going over) bounds the worker's memory whatever a program writes;
    reading with readv straight into them and wiping them after each reply keeps one program's bytes
    out of the memory the next program's child is forked from. Anonymous maps, not bytearrays: their
    pages exist only once written, so the worker a child is forked from stays small. The result buffer
    also holds the run's key, in front of the report."""

    def __init__(self, output_cap: int, result_cap: int):
        self.output_cap, self.result_cap = output_cap, result_cap
        self.caps = (output_cap, output_cap, KEY_BYTES + result_cap)
        self.bufs = [mmap.mmap(-1, cap + 1) for cap in self.caps]
        for buf in self.bufs:
            buf.madvise(mmap.MADV_DONTFORK)  # a child has no use for them, and fork need not copy them
        self.views = [memoryview(b) for b in self.bufs]
        self.filled = [0, 0, 0]

    def read(self, i: int, fd: int) -> int:
        n = os.readv(fd, [self.views[i][self.filled[i]:]])
        self.filled[i] += n
        return n

    def over(self) -> str | None:
        if self.filled[0] + self.filled[1] > self.output_cap:
            return f"stdout and stderr went over {self.output_cap} bytes"
        if self.filled[2] > self.caps[2]:
            return f"the result went over {self.result_cap} bytes"
        return None

    def report(self, key: bytes) -> str:
        """What the result pipe held: "sealed" (this run's key, then the sandbox's report), "none", or
        "foreign" (anything else: something other than the sandbox wrote on it)."""
        n = self.filled[2]
        if n == 0:
            return "none"
        return "sealed" if n >= KEY_BYTES and self.bufs[2][:KEY_BYTES] == key else "foreign"

    def chunks(self, sealed: bool) -> list[memoryview]:
        out, err, res = (v[:min(n, cap)] for v, n, cap in zip(self.views, self.filled, self.caps))
        return [out, err, res[KEY_BYTES:] if sealed else res[:0]]

    def wipe(self) -> None:
        for buf, n in zip(self.bufs, self.filled):
            buf[:n] = bytes(n)
        self.filled = [0, 0, 0]


class CpuMeter:
    """CPU seconds used by every process of the running program, together.

    From the program's cgroup where it has one (cpuacct.usage in nanoseconds, or cgroup v2's cpu.stat
    usage_usec): exact, dead processes included. Otherwise from /proc: what every live process in the
    namespace used, with what its reaped children used, plus what the worker's own reaped children used
    since the program started. (A child reaped by a parent that ignores SIGCHLD is counted nowhere; the
    wall-clock backstop still ends such a program.)"""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, fd: int | None, fmt: str | None):
        self.fd, self.fmt, self.base = fd, fmt, 0.0

    def _total(self) -> float:
        if self.fd is not None:
            raw = os.pread(self.fd, 4096, 0)
            if self.fmt == "ns":
                return int(raw) / 1e9
            return int(raw.split(b"usage_usec", 1)[1].split()[0]) / 1e6
        own = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime
        for pid in _others():
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile: reaped, and counted by whoever reaped it
            total += sum(int(x) for x in fields[11:15]) / self.TICKS  # utime, stime, cutime, cstime
        return total

    def start(self) -> None:
        self.base = self._total()

    def used(self) -> float:
        return max(0.0, self._total() - self.base)


TICK_S = 0.05  # how often a running program's CPU time is read


def supervise(pid: int, pipes: list[int], streams: Streams, meter: CpuMeter, cpu_limit: float,
              wall_deadline: float) -> tuple[str | None, str | None]:
    """Read the child's pipes until it and they are done; return (verdict, note) when it must be stopped.

    A program is stopped after ``cpu_limit`` seconds of CPU (all its processes together), so a busy
    neighbour cannot make it time out; or at ``wall_deadline``, for a program that sleeps or blocks."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (*pipes, pidfd):
        poller.register(fd, select.POLLIN | select.POLLHUP)
    index = {fd: i for i, fd in enumerate(pipes)}
    open_fds, exited = set(pipes), False
    next_tick = time.monotonic() + TICK_S
    try:
        while open_fds or not exited:
            now = time.monotonic()
            if now >= wall_deadline:
                return "timeout", (f"the program ran past its wall-clock limit, having used "
                                   f"{meter.used():.2f} s of CPU (sleeping or blocked)")
            if now >= next_tick:
                next_tick = now + TICK_S
                if meter.used() >= cpu_limit:
                    return "timeout", f"the program used more than {cpu_limit:g} s of CPU"
            for fd, _ in poller.poll(max(1, int((min(wall_deadline, next_tick) - now) * 1000))):
                if fd == pidfd:
                    exited = True
                    poller.unregister(pidfd)
                elif not streams.read(index[fd], fd):
                    poller.unregister(fd)
                    open_fds.discard(fd)
            if (why := streams.over()) is not None:
                return "output_exceeded", why
            if exited and open_fds and _others() != [pid]:
                # The program is gone but something it started still holds its pipes.
                return "killed", "the program left processes running; they were killed"
        return None, None
    finally:
        os.close(pidfd)


def _oom_kills(fd: int | None) -> int:
    """How many processes the kernel's OOM killer has ended in the programs' memory cgroup."""
    if fd is None:
        return 0
    for line in os.pread(fd, 4096, 0).splitlines():
        name, _, count = line.partition(b" ")
        if name == b"oom_kill":
            return int(count)
    return 0


class Worker:
    """What the worker holds across programs: its config, buffers and the descriptors it opened while
    the host's filesystem was still in view (the programs' cgroup, this namespace's pid counter)."""

    def __init__(self, cfg: dict, streams: Streams, mqueues: int, last_pid: int | None, cgroup: dict):
        self.cfg, self.streams, self.mqueues, self.last_pid = cfg, streams, mqueues, last_pid
        self.join = cgroup["join"]
        self.oom = cgroup["oom"]
        self.meter = CpuMeter(cgroup["cpu"], cgroup["cpu_format"])

    def run(self, header: dict, code: bytearray) -> dict:
        """Run one program in a child; return the reply header (its streams stay in ``streams``)."""
        cfg, streams = self.cfg, self.streams
        scratch = new_scratch(cfg.get("uid"))
        timeout = float(header.get("timeout_s", cfg["timeout_s"]))
        wall = float(header.get("wall_s", 2 * timeout + 1))
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        key_r, key_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        if self.last_pid is not None:  # every program's first process is pid 2: no count of earlier ones
            os.pwrite(self.last_pid, b"1", 0)
        oom_before = _oom_kills(self.oom)
        self.meter.start()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                run_child(code, cfg, scratch, timeout, out_w, err_w, res_w, key_r, self.join)
            finally:
                os._exit(70)
        key = os.urandom(KEY_BYTES)  # made after the fork: the child's memory never holds it
        os.write(key_w, key)
        code[:] = bytes(len(code))  # the child has its copy; the worker keeps none
        for fd in (out_w, err_w, res_w, key_r, key_w):
            os.close(fd)
        try:
            verdict, note = supervise(pid, [out_r, err_r, res_r], streams, self.meter, timeout, start + wall)
        finally:
            duration = time.monotonic() - start
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, wstatus = os.waitpid(pid, 0)
            cpu = self.meter.used()
            leftovers = kill_everything_else()
            for fd in (out_r, err_r, res_r):
                os.close(fd)
            reset_writable(scratch, int(cfg["scratch_mb"]), cfg["empty_dir_size"])
            clear_ipc(self.mqueues)
        if _oom_kills(self.oom) > oom_before and verdict in (None, "killed"):
            verdict, note = "memory_exceeded", (f"the program's processes together used more than "
                                                f"{cfg['memory_mb']} MB")
        elif leftovers and verdict is None:
            verdict, note = "killed", "the program left processes running; they were killed"
        report = streams.report(key)
        return {
            "id": header["id"], "verdict": verdict, "note": note, "duration_s": round(duration, 6),
            "cpu_s": round(cpu, 6), "report": report,
            "exit_code": os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
            "signal": os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None,
        }


def _read_exact(fd: int, n: int) -> bytearray | None:
    """Exactly ``n`` bytes from ``fd`` (None at end of input): never a byte of the next request."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            return None
        got += k
    return buf


def read_request(max_program_bytes: int) -> tuple[dict, bytearray] | None:
    head = _read_exact(0, HEAD.size)
    if head is None:
        return None
    hlen, blen = HEAD.unpack(head)
    if hlen > MAX_HEADER or blen > max_program_bytes:
        raise SystemExit(f"protocol error: a request of {hlen}+{blen} bytes")
    raw_header = _read_exact(0, hlen)
    code = _read_exact(0, blen)
    if raw_header is None or code is None:
        return None
    return json.loads(raw_header), code


def write_frame(header: dict, chunks: list[memoryview] = ()) -> None:
    lengths = [len(c) for c in chunks]
    if chunks:
        header = {**header, "stdout": lengths[0], "stderr": lengths[1], "result": lengths[2]}
    raw = json.dumps(header).encode()
    pending = [memoryview(HEAD.pack(len(raw), sum(lengths))), memoryview(raw), *chunks]
    while pending:
        n = os.writev(1, pending)
        while pending and n >= len(pending[0]):
            n -= len(pending.pop(0))
        if pending:
            pending[0] = pending[0][n:]


def limit_ipc(memory_mb: int) -> bool:
    """Bound what SysV IPC can hold in this (our own) IPC namespace: shared memory to ``memory_mb``
    in all (a segment created, filled and detached shows in no process's size), and few message queues
    and semaphore sets. Whether it could: a user namespace on an older kernel may not write these."""
    page = os.sysconf("SC_PAGE_SIZE")
    limits = {"kernel/shmmax": memory_mb << 20, "kernel/shmall": (memory_mb << 20) // page, "kernel/shmmni": 16,
              "kernel/msgmni": 16, "kernel/sem": "250 4000 32 16", "fs/mqueue/queues_max": 16}
    try:
        for name, value in limits.items():
            with open(f"/proc/sys/{name}", "w") as f:
                f.write(str(value))
    except OSError:
        return False
    return True


def open_pid_counter() -> int | None:
    """A descriptor on this PID namespace's ns_last_pid, opened while /proc is still writable: setting it
    before each fork gives every program the same pids, so none can count what ran before it."""
    try:
        return os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY)
    except OSError:
        return None


def open_cgroup(spec: dict | None) -> dict:
    """Descriptors on the programs' cgroup files (the host made the cgroup), opened before the host's
    filesystem leaves the view: the cgroup.procs a child joins by writing 0, the OOM-kill counter and
    the CPU counter."""
    none = {"join": [], "oom": None, "cpu": None, "cpu_format": None}
    if not spec:
        return none
    try:
        return {"join": [os.open(p, os.O_WRONLY) for p in spec["join"]],
                "oom": os.open(spec["oom"], os.O_RDONLY) if spec.get("oom") else None,
                "cpu": os.open(spec["cpu"], os.O_RDONLY) if spec.get("cpu") else None,
                "cpu_format": spec.get("cpu_format")}
    except OSError:  # not ours to use after all: run without (the hello says so), never fail to start
        return none


def setup(cfg: dict) -> dict:
    """Make this process the worker; return what it holds open and what it enforces."""
    if os.uname().machine not in ARCH:
        raise RuntimeError(f"no syscall table for {os.uname().machine} (pivot_root, keyctl, seccomp)")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # PID 1 gets from its namespace only signals it handles
    join_fresh_session_keyring()  # drop the host's session keyring, which unshare passed on
    hostname = b"tinyforge-sandbox"  # our own UTS namespace: the host's name is not a program's business
    _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    os.environ.clear()  # what the host passed on, whatever it was; each child adds HOME and TMPDIR
    os.environ.update(ENVIRONMENT)
    held = {"ipc_limited": limit_ipc(int(cfg["memory_mb"])), "last_pid": open_pid_counter(),
            "cgroup": open_cgroup(cfg.get("cgroup"))}
    build_root(cfg)
    install_syscall_filter()
    sys.dont_write_bytecode = True
    # Each forked child inherits these already imported, for free.
    for name in PRELOADED:
        __import__(name)
    return held


def main() -> None:
    cfg = json.loads(sys.argv[1])
    try:
        held = setup(cfg)
        streams = Streams(int(cfg["max_output_bytes"]), int(cfg["max_result_bytes"]))
        worker = Worker(cfg, streams, open_mqueues(), held["last_pid"], held["cgroup"])
        cfg["empty_dir_size"] = empty_dir_size()
    except BaseException as exc:
        write_frame({"fatal": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)
    write_frame({"ready": True, "pid": os.getpid(), "ipc_limited": held["ipc_limited"],
                 "pid_counter": held["last_pid"] is not None, "cgroup": bool(held["cgroup"]["join"])})
    while (request := read_request(int(cfg["max_program_bytes"]))) is not None:
        header, code = request
        try:
            reply = worker.run(header, code)
        except Exception as exc:  # a bug here must not look like a program's verdict
            kill_everything_else()
            reset_writable(None, int(cfg["scratch_mb"]), cfg["empty_dir_size"])
            clear_ipc(worker.mqueues)
            streams.wipe()
            reply = {"id": header.get("id"), "verdict": "killed", "note": f"sandbox worker error: {exc!r}",
                     "duration_s": 0.0, "cpu_s": 0.0, "report": "none", "exit_code": None, "signal": None}
        write_frame(reply, streams.chunks(reply["report"] == "sealed"))
        streams.wipe()


if __name__ == "__main__":
    main()
