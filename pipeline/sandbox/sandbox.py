"""Run untrusted Python programs in isolated, pre-started workers.

Each worker is one long-lived Python process in its own network, PID,
mount, IPC and UTS namespaces (``unshare``), whose whole filesystem is a
read-only view of what the interpreter needs. Per program it forks a child
(cheap: no new interpreter), so throughput comes from the warm worker, while
isolation comes from the namespaces, an unprivileged uid, rlimits, a small
seccomp filter and a wall clock that kills every process the program
started. Requests and replies are length-prefixed frames carrying JSON
headers, never pickle; every reply must echo its request's id.

    with Sandbox(workers=2, timeout_s=2.0, memory_mb=512) as sb:
        results = sb.run_many(programs)
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.sandbox.cgroups import PREFIX, ProgramCgroup, program_cgroup
from pipeline.sandbox.result import RunResult
from pipeline.sandbox.values import clean_text, read_report

SERVER = Path(__file__).with_name("_server.py")
_HEAD = struct.Struct("!II")  # every frame: header length, body length (see _server.py)
_MAX_HEADER = 1 << 16
_MAX_PROGRAM_BYTES = 16 * 1024 * 1024
_GRACE_S = 10.0  # the worker enforces each timeout; this much longer without a reply means it is hung
_VERDICT_ERROR = {
    "timeout": "the program ran past its time limit",
    "output_exceeded": "the program wrote more than the output limit",
    "memory_exceeded": "the program's processes used more than the memory limit",
    "killed": "the program was killed",
}
_SIGNAL_STATUS = {signal.SIGXCPU: "timeout", signal.SIGXFSZ: "output_exceeded"}


class SandboxUnavailable(UserError):
    """This machine cannot create the namespaces the sandbox needs."""


_LOST = RunResult("killed", error="the sandbox worker stopped answering and was restarted")


# --- what the worker's interpreter needs to see ----------------------------------------------------


@functools.lru_cache(maxsize=1)
def _python_view() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories, files) the worker exposes read-only: the ``sys.path`` of ``python -I -S`` (the
    standard library and its extension modules), the time-zone data, and every shared library the
    interpreter and those extension modules link to. Computed once per process (~0.1 s)."""
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys, json; print(json.dumps(sys.path))"],
                           capture_output=True, text=True, env={}, timeout=60, check=True)
    dirs = [p for p in json.loads(probe.stdout) if os.path.isdir(p)]
    import zoneinfo  # its search path, as the sandboxed interpreter will use it

    dirs += [p for p in zoneinfo.TZPATH if os.path.isdir(p)]
    binaries = [os.path.realpath(sys.executable)]
    binaries += [os.path.join(d, f) for d in dirs for f in sorted(os.listdir(d)) if ".so" in f]
    return tuple(dirs), tuple(_shared_libraries(binaries))


def _dynamic_loader() -> str | None:
    """The dynamic loader this interpreter was started by (ld-linux-*.so), from our own memory map."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(maxsplit=5)[-1].strip()
            if os.path.basename(path).startswith("ld-linux") and os.path.isfile(path):
                return path
    return None


def _ldd(binaries: list[str]) -> str:
    """ldd's listing of ``binaries``. Asking glibc's loader directly (``ld.so --list``, what ldd runs
    for each file) takes a quarter of the time of the ldd script; ldd itself is the fallback."""
    loader, sh = _dynamic_loader(), shutil.which("sh")
    if loader and sh:
        loop = 'for f; do "$0" --list "$f"; done'
        out = subprocess.run([sh, "-c", loop, loader, *binaries], capture_output=True, text=True,
                             env={"LC_ALL": "C"}, timeout=120)
        if "=>" in out.stdout:
            return out.stdout
    ldd = shutil.which("ldd")
    if ldd is None:
        return ""
    return subprocess.run([ldd, *binaries], capture_output=True, text=True, env={"LC_ALL": "C"}, timeout=120).stdout


def _shared_libraries(binaries: list[str]) -> list[str]:
    """The shared libraries ``binaries`` load, as the dynamic loader names them, plus the loader's
    cache that maps their names to paths and libgcc_s, which glibc opens on demand (thread cancellation).

    Without a way to list them (no glibc loader, no ldd) fall back to the system library directories."""
    found: dict[str, None] = {}
    for line in _ldd(binaries).splitlines():
        words = line.split()
        path = words[2] if len(words) >= 3 and words[1] == "=>" else words[0] if words else ""
        if path.startswith("/") and os.path.exists(path):
            found[path] = None
    if not found:
        return [d for d in ("/lib", "/lib64", "/usr/lib", "/usr/lib64") if os.path.isdir(d)]
    for lib in list(found):
        if os.path.basename(lib).startswith("libc.so"):
            gcc_s = os.path.join(os.path.dirname(lib), "libgcc_s.so.1")
            if os.path.exists(gcc_s):
                found[gcc_s] = None
    if os.path.exists("/etc/ld.so.cache"):
        found["/etc/ld.so.cache"] = None
    return list(found)


# --- one worker: a process speaking frames ---------------------------------------------------------


class _BadReply(Exception):
    """The worker's answer cannot be trusted: the program it was for gets ``result`` and the worker is
    restarted (whatever else it might still send would be out of step)."""

    def __init__(self, result: RunResult):
        super().__init__(result.error)
        self.result = result


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _interpret(header: dict[str, Any], body: bytes) -> RunResult:
    """A program's result from a validated reply. In this order: the worker's verdict (it stopped the
    program); a death by signal, whatever was reported before it; a result channel that held anything
    but the sandbox's own sealed report; an exit that was not the sandbox's, after the report; only
    then the report, checked value by value."""
    n_out, n_err = header["stdout"], header["stderr"]
    common = {"stdout": body[:n_out].decode(errors="replace"),
              "stderr": body[n_out:n_out + n_err].decode(errors="replace"),
              "duration_s": float(header["duration_s"]), "cpu_s": float(header["cpu_s"]),
              "exit_code": header["exit_code"], "signal": header["signal"]}
    sealed = header["report"] == "sealed"
    report, problem = read_report(body[n_out + n_err:]) if sealed else (None, None)
    verdict, sig, code = header["verdict"], header["signal"], header["exit_code"]
    if verdict is not None:
        why = header["note"] or (report or {}).get("error") or _VERDICT_ERROR[verdict]
        return RunResult(verdict, error=clean_text(why[:1000]), **common)
    if sig is not None:
        return RunResult(_SIGNAL_STATUS.get(sig, "killed"), error=f"killed by signal {_signal_name(sig)}", **common)
    if header["report"] == "foreign":
        return RunResult("error", error="the program wrote on the sandbox's result channel", **common)
    if not sealed or code != 0:
        return RunResult("error", error=f"the program ended without finishing (exit code {code})", **common)
    if problem is not None:
        return RunResult("error", error=problem, **common)
    assert report is not None
    error = report.get("error")
    return RunResult(report["status"], value=report.get("value"), value_repr=report.get("value_repr"),
                     error=error[:1000] if error else error, **common)


def _valid_reply(header: Any, body_len: int, request_id: int) -> bool:
    """Whether a reply header has the shape the worker writes and answers ``request_id``."""
    if not isinstance(header, dict) or type(header.get("id")) is not int or header["id"] != request_id:
        return False
    lengths = [header.get(k) for k in ("stdout", "stderr", "result")]
    if not all(type(n) is int and n >= 0 for n in lengths) or sum(lengths) != body_len:
        return False
    return (header.get("verdict") in (None, *_VERDICT_ERROR)
            and header.get("report") in ("sealed", "none", "foreign")
            and type(header.get("note")) in (str, type(None))
            and all(type(header.get(k)) in (int, float) for k in ("duration_s", "cpu_s"))
            and all(type(header.get(k)) in (int, type(None)) for k in ("exit_code", "signal")))


@dataclass
class _Job:
    key: Any  # the caller's name for it (an index in run_many)
    frame: bytes  # the request frame, less its id
    timeout_s: float  # CPU seconds
    wall_s: float  # wall-clock seconds: the backstop for a program that sleeps or blocks
    request_id: int = 0


# The worker's command line says nothing of the host (a program may read it in /proc/1/cmdline on the
# user-namespace path): the interpreter, its flags and this loader. Its config and source come as the
# first frame on stdin.
_BOOTSTRAP = (
    "import os,struct,sys\n"
    "def r(n):\n"
    " b=bytearray()\n"
    " while len(b)<n:\n"
    "  c=os.read(0,n-len(b))\n"
    "  if not c:raise SystemExit(1)\n"
    "  b+=c\n"
    " return bytes(b)\n"
    "h,n=struct.unpack('!II',r(8))\n"
    "sys.argv[1:]=[r(h).decode()]\n"
    "exec(compile(r(n),'sandbox-worker','exec'),{'__name__':'__main__'})\n"
)


def _fresh_uid() -> int:
    """A uid no other worker uses: drawn at random from 2**30 .. 2**31 - 2, far above any real user and
    the ranges /etc/subuid hands out. Per worker launch, so RLIMIT_NPROC (counted per uid across the
    host) and the per-uid keyrings are never shared with another worker, another Sandbox, or the
    dying processes of this worker's previous launch."""
    return (1 << 30) + int.from_bytes(os.urandom(4), "big") % ((1 << 30) - 1)


class _Worker:
    """One worker process. Created stopped: ``start()`` (or ``launch()`` then ``await_ready()``, which lets
    a pool start its workers side by side)."""

    def __init__(self, index: int, config: dict[str, Any], startup_timeout_s: float, user_namespace: bool):
        self.index = index
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.user_namespace = user_namespace
        self.max_body = 2 * int(config["max_output_bytes"]) + int(config["max_result_bytes"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.retired = False
        self.uid: int | None = None  # the uid its programs run as, this launch (None: user namespace)
        self.cgroup = ProgramCgroup()
        self.hello: dict[str, Any] = {}
        self._launches = itertools.count(1)
        self._ids = itertools.count(1)  # never reused, across restarts too: a stale reply cannot match

    def command(self) -> list[str]:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise SandboxUnavailable("the sandbox needs `unshare` (util-linux), which is not on PATH")
        ns = ["--net", "--pid", "--mount", "--ipc", "--uts", "--cgroup", "--fork", "--mount-proc"]
        if self.user_namespace:
            ns = ["--user", "--map-root-user", *ns]
        return [unshare, *ns, "--", os.path.realpath(sys.executable), "-I", "-S", "-c", _BOOTSTRAP]

    def start(self) -> None:
        self.launch()
        self.await_ready()

    def launch(self) -> None:
        if self.retired:
            raise RuntimeError("the sandbox is closed")
        self._rbuf = bytearray()  # bytes read from the worker that do not yet make a whole frame
        self.uid = None if self.user_namespace else _fresh_uid()
        self.cgroup = program_cgroup(f"{PREFIX}{os.getpid()}-{id(self):x}-{next(self._launches)}",
                                     int(self.config["memory_mb"]) << 20)
        config = json.dumps({**self.config, "uid": self.uid, "cgroup": self.cgroup.worker_config()}).encode()
        source = SERVER.read_bytes()
        self._startup = bytearray(_HEAD.pack(len(config), len(source)) + config + source)
        # The worker starts with an empty environment: no API key or token can reach a program.
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True,
            close_fds=True, cwd="/",
        )
        assert self.proc.stdin
        os.set_blocking(self.proc.stdin.fileno(), False)  # writes interleave with reads in _exchange
        self._launched = time.monotonic()

    def await_ready(self) -> None:
        """Send the worker its config and code, and wait for its hello; SandboxUnavailable, with its
        reason, if it does not come."""
        try:
            hello, _ = self._exchange(self._startup, self._launched + self.startup_timeout_s)
        except _BadReply:
            hello = {}
        if not isinstance(hello, dict) or hello.get("ready") is not True:
            stderr = self._drain_stderr()
            self.stop()
            why = hello.get("fatal") if isinstance(hello, dict) else None
            why = why or (stderr.strip().splitlines() or ["no answer"])[-1]
            raise SandboxUnavailable(f"the sandbox worker could not start: {why}")
        self.hello = hello

    def _drain_stderr(self) -> str:
        assert self.proc and self.proc.stderr
        if select.select([self.proc.stderr], [], [], 0.5)[0]:
            return self.proc.stderr.read(65536).decode(errors="replace")
        return ""

    def _take_frame(self) -> tuple[Any, bytes] | None:
        """One whole frame off the front of the read buffer, or None until it has arrived."""
        buf = self._rbuf
        if len(buf) < _HEAD.size:
            return None
        hlen, blen = _HEAD.unpack_from(buf)
        if hlen > _MAX_HEADER:
            raise _BadReply(RunResult("error", error="the sandbox worker's reply was malformed"))
        if blen > self.max_body:
            raise _BadReply(RunResult("output_exceeded", error=f"the sandbox worker's reply was over {self.max_body} bytes"))
        end = _HEAD.size + hlen + blen
        if len(buf) < end:
            return None
        try:
            header = json.loads(bytes(buf[_HEAD.size:_HEAD.size + hlen]))
        except (ValueError, RecursionError):
            raise _BadReply(RunResult("error", error="the sandbox worker's reply was malformed")) from None
        body = bytes(buf[_HEAD.size + hlen:end])
        del buf[:end]
        return header, body

    def _exchange(self, out: bytearray, deadline: float) -> tuple[Any, bytes]:
        """Write ``out`` (consuming it) as the worker takes it, until one whole frame has come back.

        One thread does both so neither side can block the other: the worker may be writing a large
        reply while we still have requests to queue."""
        assert self.proc and self.proc.stdin and self.proc.stdout
        rfd, wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        while (frame := self._take_frame()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _BadReply(_LOST)
            poller = select.poll()
            poller.register(rfd, select.POLLIN)
            if out:
                poller.register(wfd, select.POLLOUT)
            for fd, _ in poller.poll(max(1, int(left * 1000))):
                if fd == wfd:
                    try:
                        del out[:os.write(wfd, out[:1 << 16])]
                    except BlockingIOError:
                        pass
                    except OSError:  # the worker is gone: its end of output will follow
                        out.clear()
                    continue
                chunk = os.read(rfd, 1 << 16)
                if not chunk:
                    raise _BadReply(_LOST)
                self._rbuf += chunk
        return frame

    def _frame(self, job: _Job) -> bytes:
        job.request_id = next(self._ids)
        header = json.dumps({"id": job.request_id, "timeout_s": job.timeout_s, "wall_s": job.wall_s}).encode()
        return _HEAD.pack(len(header), len(job.frame)) + header + job.frame

    def serve(self, take: Callable[[], _Job | None], deliver: Callable[[Any, RunResult], None], depth: int) -> None:
        """Run the jobs ``take()`` hands out (None: no more), up to ``depth`` queued on the worker, and
        ``deliver`` each one's result.

        Replies come in request order and must echo the request's id. A reply that is missing (the
        worker died or hung), unreadable, too large, misshapen or for another request costs the
        program at the head of the queue its result; the worker is restarted and what was queued
        behind is sent again, so every other program still gets its own result."""
        if self.proc is None:  # an earlier restart failed: try again
            self.start()
        inflight: deque[_Job] = deque()
        out = bytearray()
        more, out_of_step = True, False
        try:
            while True:
                while more and len(inflight) < depth:
                    job = take()
                    if job is None:
                        more = False
                    else:
                        out += self._frame(job)
                        inflight.append(job)
                if not inflight:
                    return
                head = inflight[0]
                try:
                    header, body = self._exchange(out, time.monotonic() + head.wall_s + _GRACE_S)
                    if not _valid_reply(header, len(body), head.request_id):
                        raise _BadReply(RunResult("error", error="the sandbox worker's reply was malformed "
                                                                 "or answered another program"))
                    result = _interpret(header, body)
                except _BadReply as exc:
                    inflight.popleft()
                    out_of_step = True
                    self.restart()
                    out_of_step = False
                    out = bytearray(b"".join(self._frame(j) for j in inflight))
                    deliver(head.key, exc.result)
                    continue
                inflight.popleft()
                deliver(head.key, result)
        finally:
            if inflight or out_of_step:  # stopped with answers still owed: never hand on a worker out of step
                self.restart()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 9)  # the worker is PID 1 of its namespace: every program dies with it
        except ProcessLookupError:
            pass
        self.proc.wait()  # unshare reaps the worker, whose exit waits for every process in its namespace
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self.proc = None
        self.cgroup.remove()


def _job(key: Any, program: str, timeout_s: float, wall_s: float) -> _Job | RunResult:
    """A program as a request body, or the result it gets without running (too large to send)."""
    try:
        body = program.encode("utf-8")
    except UnicodeEncodeError as exc:
        return RunResult("error", error=f"the program is not valid UTF-8: {exc}")
    if len(body) > _MAX_PROGRAM_BYTES:
        return RunResult("error", error=f"the program is larger than {_MAX_PROGRAM_BYTES} bytes")
    return _Job(key, body, timeout_s, wall_s)


class Sandbox:
    """A pool of isolated Python workers. Use as a context manager.

    ``timeout_s`` is CPU time: a program is stopped once all its processes together have used that
    much, however busy the machine is, so a neighbour cannot make an honest program time out.
    ``wall_timeout_s`` (default ``2 * timeout_s + 1``) stops one that sleeps or blocks.
    ``memory_mb`` bounds each process's address space, and all of a program's processes together
    where this host lets us make a memory cgroup (``limits()`` says which).

    ``user_namespace``: run the workers in a user namespace (``--map-root-user``). The default, None,
    does so only when not root, as a non-root host must; True forces it, which lets a root host test
    the non-root path."""

    def __init__(self, workers: int = 2, timeout_s: float = 2.0, memory_mb: int = 512, *,
                 wall_timeout_s: float | None = None, max_output_bytes: int = 64_000,
                 max_result_bytes: int = 1_000_000, max_file_bytes: int = 8 * 1024 * 1024, nproc: int = 16,
                 scratch_mb: int = 64, startup_timeout_s: float = 30.0, user_namespace: bool | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers_n, self.timeout_s, self.memory_mb = workers, timeout_s, memory_mb
        self.wall_timeout_s = wall_timeout_s
        self._config = {"timeout_s": timeout_s, "memory_mb": memory_mb, "max_output_bytes": max_output_bytes,
                        "max_result_bytes": max_result_bytes, "max_program_bytes": _MAX_PROGRAM_BYTES,
                        "max_file_bytes": max_file_bytes, "nproc": nproc, "scratch_mb": scratch_mb}
        self._startup_timeout_s = startup_timeout_s
        self._user_namespace = os.geteuid() != 0 if user_namespace is None else user_namespace
        self._workers: list[_Worker] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()

    def _limits(self, timeout_s: float | None) -> tuple[float, float]:
        """(CPU seconds, wall-clock seconds) for a program."""
        cpu = timeout_s or self.timeout_s
        return cpu, self.wall_timeout_s or 2 * cpu + 1

    def limits(self) -> dict[str, bool]:
        """What the first worker enforces beyond rlimits and namespaces, on this host: a memory bound on
        all of a program's processes together (a memory cgroup), its CPU counted by a cgroup (else from
        /proc), SysV IPC bounded in its namespace, and the pid counter reset for each program."""
        if not self._workers:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...) as sb:`")
        w = self._workers[0]
        joined = w.hello.get("cgroup") is True  # the worker could open what the host made
        return {"memory_cgroup": joined and w.cgroup.memory_bytes is not None,
                "cpu_cgroup": joined and w.cgroup.cpu is not None,
                "ipc_limited": w.hello.get("ipc_limited") is True, "pid_counter": w.hello.get("pid_counter") is True}

    def __enter__(self) -> Sandbox:
        try:
            try:
                dirs, files = _python_view()
            except (OSError, ValueError, subprocess.SubprocessError) as exc:
                raise SandboxUnavailable(f"could not list what the sandbox's interpreter needs: {exc}") from exc
            last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
            for i in range(self.workers_n):
                cfg = {**self._config, "expose_dirs": dirs, "expose_files": files, "last_cap": last_cap}
                self._workers.append(_Worker(i, cfg, self._startup_timeout_s, self._user_namespace))
            for w in self._workers:  # all start side by side
                w.launch()
            for w in self._workers:
                w.await_ready()
                self._idle.put(w)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            w.retired = True
            w.stop()
        self._workers.clear()

    def run(self, program: str, timeout_s: float | None = None) -> RunResult:
        """Run one program on the next free worker (thread-safe)."""
        if not self._workers:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...) as sb:`")
        job = _job(0, program, *self._limits(timeout_s))
        if isinstance(job, RunResult):
            return job
        jobs, got = [job], []
        worker = self._idle.get()
        try:
            worker.serve(lambda: jobs.pop() if jobs else None, lambda _, r: got.append(r), 1)
        finally:
            self._idle.put(worker)
        return got[0]

    def run_many(self, programs: Sequence[str], timeout_s: float | None = None,
                 on_result: Callable[[int, RunResult], None] | None = None, depth: int = 4) -> list[RunResult]:
        """Run every program, spread over the workers; results in input order.

        Each worker has up to ``depth`` programs queued, so it starts the next
        one the moment it finishes a program instead of waiting for this
        process to read the result and send another. ``on_result(i, result)``
        is called as each finishes (from worker threads, one call at a time).
        """
        if not self._workers:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...) as sb:`")
        limits = self._limits(timeout_s)
        results: list[RunResult | None] = [None] * len(programs)
        todo = iter(range(len(programs)))
        lock, failures = threading.Lock(), []

        def deliver(i: int, r: RunResult) -> None:
            with lock:
                results[i] = r
                if on_result:
                    on_result(i, r)

        def take() -> _Job | None:
            while True:
                with lock:
                    i = None if failures else next(todo, None)  # after a failure, stop handing out work
                if i is None:
                    return None
                job = _job(i, programs[i], *limits)
                if isinstance(job, _Job):
                    return job
                deliver(i, job)

        def feed(worker: _Worker) -> None:
            try:
                worker.serve(take, deliver, max(1, depth))
            except BaseException as exc:  # re-raised below, once every worker has stopped
                with lock:
                    failures.append(exc)

        taken = [self._idle.get() for _ in self._workers]
        try:
            threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in taken]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for w in taken:
                self._idle.put(w)
        if failures:
            raise failures[0]
        return results  # type: ignore[return-value]


def sandbox_available() -> tuple[bool, str]:
    """Whether this machine can run the sandbox, and why not."""
    try:
        with Sandbox(workers=1, startup_timeout_s=15) as sb:
            r = sb.run("result = 1 + 1")
        return (r.ok and r.value == 2), r.error or ""
    except SandboxUnavailable as exc:
        return False, str(exc)


if __name__ == "__main__":  # python -m pipeline.sandbox.sandbox: a quick self-check
    t = time.perf_counter()
    print(sandbox_available(), f"{time.perf_counter() - t:.2f}s")
