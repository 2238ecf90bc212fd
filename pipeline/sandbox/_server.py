"""The sandbox worker: runs inside fresh network, PID and mount namespaces.

Started by ``pipeline.sandbox.Sandbox`` as ``unshare ... python -I -S _server.py CONFIG``;
it imports nothing outside the standard library and never reads the host's
environment. It is PID 1 of its own PID namespace, so every process a
program starts (daemons included) is visible in its /proc and is killed
when the program ends.

Setup, once: make every mount read-only, put private tmpfs on /tmp, /var/tmp
and /dev/shm (the only writable places), then say "ready" on stdout.

Then, per request (one JSON line on stdin): fork a child that starts a new
session, drops to an unprivileged uid, sets rlimits, clears the environment,
chdirs into a fresh scratch dir and execs the program. The worker collects
capped stdout/stderr and the program's ``result`` as JSON over a pipe (never
pickle), enforces the wall clock, kills everything left in the namespace,
removes the scratch dir and answers with one JSON line.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
_FLAG_OPTS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
PRELOADED = (
    "abc", "array", "bisect", "calendar", "cmath", "collections", "contextlib", "copy", "dataclasses",
    "datetime", "decimal", "encodings.idna", "enum", "fractions", "functools", "heapq", "itertools", "json", "math", "numbers",
    "operator", "random", "re", "socket", "statistics", "string", "struct", "subprocess", "textwrap", "time",
    "typing",
)
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mountinfo() -> list[tuple[str, int]]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            path = fields[4].encode().decode("unicode_escape")  # "\040" is a space
            flags = 0
            for opt in fields[5].split(","):
                flags |= _FLAG_OPTS.get(opt, 0)
            points.append((path, flags))
    return points


def setup_filesystem(scratch_mb: int) -> None:
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do here leaks to the host
    for path, flags in _mountinfo():
        if path.startswith("/proc") or not os.path.isdir(path):
            continue
        try:
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:
            if path == "/":
                raise  # a writable root is not a sandbox
    for path in WRITABLE:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,mode=1777")
    try:
        open("/.tinyforge-write-probe", "w").close()
    except OSError:
        pass
    else:
        raise RuntimeError("the root filesystem is still writable")


# --- the child: becomes the program --------------------------------------------------------


def _json_value(value):
    """The program's ``result`` as JSON, or (None, repr) when it is not representable."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value, None
    if isinstance(value, int):
        return (value, None) if abs(value) < 2**63 else (float(value), None)
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else (None, repr(value))
    try:
        json.dumps(value, allow_nan=False)
        return value, None
    except (TypeError, ValueError):
        pass
    try:  # Fraction, Decimal, numpy scalars...
        f = float(value)
        return (f, None) if math.isfinite(f) else (None, repr(f))
    except (TypeError, ValueError, OverflowError):
        return None, repr(value)[:200]


def run_child(req: dict, cfg: dict, scratch: str, out_w: int, err_w: int, res_w: int) -> None:
    status, error, value, value_repr = "error", None, None, None
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, 3)
        os.closerange(4, 1 << 16)
        os.chdir(scratch)
        timeout = float(req.get("timeout_s", cfg["timeout_s"]))
        cpu = max(1, math.ceil(timeout)) + 1
        mem = int(req.get("memory_mb", cfg["memory_mb"])) * 1024 * 1024
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
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
                           "LANG": "C.UTF-8"})
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        # sys.stdout/stderr already write to fds 1 and 2, which now are the
        # program's pipes; the worker flushed them before forking.
    except BaseException as exc:  # setup failed: say so, never run the program unconfined
        os.write(res_w, json.dumps({"status": "error", "error": f"sandbox setup failed: {exc!r}"}).encode())
        os._exit(70)

    try:
        scope = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(req["code"], "<program>", "exec"), scope)
        status = "ok"
        if "result" in scope:
            value, value_repr = _json_value(scope["result"])
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
    scope = None  # free what the program allocated before reporting
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        os.write(3, json.dumps({"status": status, "error": error, "value": value, "value_repr": value_repr},
                               allow_nan=False).encode())
    except BaseException:
        os._exit(71)
    os._exit(0)


# --- the worker: supervises one child at a time ---------------------------------------------


def _others() -> list[int]:
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def kill_everything_else() -> int:
    """SIGKILL every other process in this PID namespace; return how many were found."""
    found = set()
    for _ in range(100):
        pids = _others()
        if not pids:
            break
        for pid in pids:
            found.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.001)
    return len(found)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


SIGNAL_STATUS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "output_exceeded"}


def run_one(req: dict, cfg: dict, seq: int) -> dict:
    scratch = f"/tmp/run-{seq}"
    os.mkdir(scratch, 0o700)
    if cfg.get("uid") is not None:
        os.chown(scratch, cfg["uid"], cfg["uid"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    timeout = float(req.get("timeout_s", cfg["timeout_s"]))
    cap = int(cfg["max_output_bytes"])
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(out_r), os.close(err_r), os.close(res_r)
        run_child(req, cfg, scratch, out_w, err_w, res_w)
    for fd in (out_w, err_w, res_w):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    bufs = {out_r: bytearray(), err_r: bytearray(), res_r: bytearray()}
    poller = select.poll()
    for fd in (*bufs, pidfd):
        poller.register(fd, select.POLLIN | select.POLLHUP)
    open_fds, exited, verdict, note = set(bufs), False, None, None
    deadline = start + timeout

    while open_fds or not exited:
        left = deadline - time.monotonic()
        if left <= 0:
            verdict = "timeout"
            break
        for fd, _ in poller.poll(max(1, int(left * 1000))):
            if fd == pidfd:
                exited = True
                poller.unregister(pidfd)
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            bufs[fd] += chunk
            if fd != res_r and len(bufs[out_r]) + len(bufs[err_r]) > cap:
                verdict = "output_exceeded"
        if verdict:
            break
        if exited and open_fds:
            # The program is gone but something it started still holds its pipes.
            if _others() != [pid]:
                verdict, note = "killed", "the program left processes running; they were killed"
                break
    duration = time.monotonic() - start

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, wstatus = os.waitpid(pid, 0)
    leftovers = kill_everything_else()
    if leftovers and verdict is None:
        verdict, note = "killed", "the program left processes running; they were killed"
    for fd in (*bufs, pidfd):
        try:
            while fd != pidfd and (chunk := os.read(fd, 65536)) and len(bufs[fd]) < cap + 65536:
                bufs[fd] += chunk
        except OSError:
            pass
        os.close(fd)
    shutil.rmtree(scratch, ignore_errors=True)

    reply: dict = {"value": None, "value_repr": None, "error": None}
    try:
        reply.update(json.loads(bufs[res_r].decode()))
    except (ValueError, UnicodeDecodeError):
        pass
    sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
    if verdict is not None:
        reply["status"] = verdict
        reply["value"] = None
    elif "status" not in reply:
        if sig is not None:
            reply["status"] = SIGNAL_STATUS.get(sig, "killed")
            reply["error"] = f"killed by signal {signal.Signals(sig).name}"
        else:
            reply["status"] = "error"
            reply["error"] = f"the program exited with code {os.WEXITSTATUS(wstatus)} before finishing"
    if note:
        reply["error"] = note
    return {
        "id": req.get("id"),
        "status": reply["status"],
        "value": reply["value"],
        "value_repr": reply["value_repr"],
        "error": reply["error"],
        "stdout": bufs[out_r][:cap].decode(errors="replace"),
        "stderr": bufs[err_r][:cap].decode(errors="replace"),
        "duration_s": round(duration, 6),
        "exit_code": os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
        "signal": sig,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = sys.stdout
    try:
        setup_filesystem(int(cfg["scratch_mb"]))
        # Each forked child inherits these already imported, for free. On a host
        # whose Python lives where the sandbox uid cannot read (root's home),
        # they are also the only modules a program can import.
        for name in PRELOADED:
            __import__(name)
    except BaseException as exc:
        out.write(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        sys.exit(1)
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for seq, line in enumerate(sys.stdin):
        try:
            req = json.loads(line)
            reply = run_one(req, cfg, seq)
        except Exception as exc:  # a bug here must not look like a program's verdict
            reply = {"id": None, "status": "killed", "error": f"sandbox worker error: {exc!r}"}
            kill_everything_else()
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
