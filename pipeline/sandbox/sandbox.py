"""Run untrusted Python programs in isolated, pre-started workers.

Each worker is one long-lived Python process in its own network, PID and
mount namespaces (``unshare``), with a read-only view of the filesystem.
Per program it forks a child (cheap: no new interpreter), so throughput
comes from the warm worker, while isolation comes from the namespaces, an
unprivileged uid, rlimits and a wall clock that kills every process the
program started. Results come back as JSON lines, never pickle.

    with Sandbox(workers=2, timeout_s=2.0, memory_mb=512) as sb:
        results = sb.run_many(programs)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

SERVER = Path(__file__).with_name("_server.py")
STATUSES = ("ok", "error", "timeout", "memory_exceeded", "output_exceeded", "killed")
_UID_BASE = 61000  # unprivileged uids the programs run as, one per worker (root hosts only)


class SandboxUnavailable(UserError):
    """This machine cannot create the namespaces the sandbox needs."""


@dataclass(frozen=True, slots=True)
class RunResult:
    status: str  # one of STATUSES
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    value: Any = None  # JSON value of the program's module-level `result`, if it set one
    value_repr: str | None = None  # repr of `result` when it is not JSON (or not finite)
    error: str | None = None  # why a non-ok program failed, in one line
    exit_code: int | None = None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_reply(cls, reply: dict[str, Any]) -> RunResult:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in reply.items() if k in fields})


_LOST = RunResult("killed", error="the sandbox worker stopped answering and was restarted")


class _Worker:
    def __init__(self, index: int, config: dict[str, Any], startup_timeout_s: float):
        self.index = index
        self.config = config
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def command(self) -> list[str]:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise SandboxUnavailable("the sandbox needs `unshare` (util-linux), which is not on PATH")
        ns = ["--net", "--pid", "--mount", "--fork", "--mount-proc"]
        if os.geteuid() != 0:
            ns = ["--user", "--map-root-user", *ns]
        return [unshare, *ns, "--", sys.executable, "-I", "-S", str(SERVER), json.dumps(self.config)]

    def start(self) -> None:
        self._pending = b""  # bytes read from the worker that do not yet end a line
        # The worker starts with an empty environment: no API key or token can reach a program.
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, start_new_session=True,
            close_fds=True, cwd="/",
        )
        line = self._readline(self.startup_timeout_s)
        hello = json.loads(line) if line else {}
        if not hello.get("ready"):
            stderr = self._drain_stderr()
            self.stop()
            why = hello.get("fatal") or stderr.strip().splitlines()[-1:] or ["no answer"]
            raise SandboxUnavailable(f"the sandbox worker could not start: {why if isinstance(why, str) else why[0]}")

    def _readline(self, timeout_s: float) -> bytes | None:
        """The worker's next line, or None after ``timeout_s`` without one or at end of output.

        Reads the pipe's file descriptor into a buffer of our own: with requests
        pipelined, one read can bring several result lines, and select() on the
        descriptor would not see those left in a file object's buffer.
        """
        assert self.proc and self.proc.stdout
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _drain_stderr(self) -> str:
        assert self.proc and self.proc.stderr
        if select.select([self.proc.stderr], [], [], 0.5)[0]:
            return self.proc.stderr.read1(65536).decode(errors="replace")
        return ""

    def send(self, code: str, timeout_s: float) -> bool:
        """Queue one program on the worker; False if the worker is gone."""
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write(json.dumps({"code": code, "timeout_s": timeout_s}).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def receive(self, timeout_s: float) -> RunResult | None:
        """The next result in send order; None if the worker stopped answering."""
        try:
            line = self._readline(timeout_s + 10.0)  # the worker enforces timeout_s; this is a backstop
        except (ValueError, OSError):
            line = None
        return RunResult.from_reply(json.loads(line)) if line else None

    def restart(self) -> None:
        self.stop()
        self.start()

    def run(self, code: str, timeout_s: float) -> RunResult:
        result = self.receive(timeout_s) if self.send(code, timeout_s) else None
        if result is None:
            self.restart()
            return _LOST
        return result

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self.proc = None


class Sandbox:
    """A pool of isolated Python workers. Use as a context manager."""

    def __init__(self, workers: int = 2, timeout_s: float = 2.0, memory_mb: int = 512, *,
                 max_output_bytes: int = 64_000, max_file_bytes: int = 8 * 1024 * 1024, nproc: int = 16,
                 scratch_mb: int = 64, startup_timeout_s: float = 30.0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers_n, self.timeout_s, self.memory_mb = workers, timeout_s, memory_mb
        self._config = {"timeout_s": timeout_s, "memory_mb": memory_mb, "max_output_bytes": max_output_bytes,
                        "max_file_bytes": max_file_bytes, "nproc": nproc, "scratch_mb": scratch_mb}
        self._startup_timeout_s = startup_timeout_s
        self._workers: list[_Worker] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()

    def __enter__(self) -> Sandbox:
        try:
            for i in range(self.workers_n):
                cfg = {**self._config, "uid": _UID_BASE + i if os.geteuid() == 0 else None}
                w = _Worker(i, cfg, self._startup_timeout_s)
                self._workers.append(w)
                self._idle.put(w)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers.clear()

    def run(self, program: str, timeout_s: float | None = None) -> RunResult:
        """Run one program on the next free worker (thread-safe)."""
        if not self._workers:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...) as sb:`")
        worker = self._idle.get()
        try:
            return worker.run(program, timeout_s or self.timeout_s)
        finally:
            self._idle.put(worker)

    def run_many(self, programs: Sequence[str], timeout_s: float | None = None,
                 on_result: Callable[[int, RunResult], None] | None = None, depth: int = 4) -> list[RunResult]:
        """Run every program, spread over the workers; results in input order.

        Each worker has up to ``depth`` programs queued, so it starts the next
        one the moment it finishes a program instead of waiting for this
        process to read the result and send another.
        """
        if not self._workers:
            raise RuntimeError("the sandbox is not started: use `with Sandbox(...) as sb:`")
        timeout = timeout_s or self.timeout_s
        results: list[RunResult | None] = [None] * len(programs)
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(programs)):
            todo.put(i)
        lock = threading.Lock()

        def feed(worker: _Worker) -> None:
            # A writer and a reader per worker: a blocked write can never stall the reads.
            inflight: queue.Queue[int | None] = queue.Queue()
            slots = threading.Semaphore(depth)
            broken = threading.Event()

            def writer() -> None:
                while not broken.is_set():
                    slots.acquire()
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        break
                    inflight.put(i)
                    if not worker.send(programs[i], timeout):
                        break
                inflight.put(None)

            w = threading.Thread(target=writer, daemon=True)
            w.start()
            while (i := inflight.get()) is not None:
                r = None if broken.is_set() else worker.receive(timeout)
                if r is None:  # the worker died or hung: everything queued on it is lost
                    broken.set()
                    slots.release()
                    r = _LOST
                results[i] = r
                slots.release()
                if on_result:
                    with lock:
                        on_result(i, r)
            w.join()
            if broken.is_set():
                worker.restart()

        with self._all_workers():
            threads = [threading.Thread(target=feed, args=(w,), daemon=True) for w in self._workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results  # type: ignore[return-value]

    @contextlib.contextmanager
    def _all_workers(self) -> Iterator[None]:
        taken = [self._idle.get() for _ in self._workers]
        try:
            yield
        finally:
            for w in taken:
                self._idle.put(w)


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
