"""One build at a time per build directory.

Two runs of the same recipe (a nightly schedule firing while a maintainer's
manual run is still going, say) would write the same stage folders and race
on the published dataset. ``BuildLock`` takes an exclusive ``flock`` on
``<build_dir>/.lock``: the kernel drops it when the holder exits, however it
exits, so a killed build never leaves a stale lock behind. The file also
names its holder, which is what the second run's error message shows.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.errors import UserError

LOCK_FILE = ".lock"


class BuildLocked(UserError):
    """Another run holds the build directory."""


def read_holder(build_dir: Path) -> dict[str, Any]:
    """Who last took the lock (pid, host, started, run); empty when nobody ever did."""
    try:
        holder = json.loads((Path(build_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def is_locked(build_dir: Path) -> bool:
    """Whether a run holds the build directory right now."""
    path = Path(build_dir) / LOCK_FILE
    if not path.is_file():
        return False
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def wait_until_free(build_dir: Path, wait: float = 0.0, poll: float = 0.5) -> None:
    """Raise BuildLocked unless the build directory is free within ``wait`` seconds (a check, not a claim)."""
    lock = BuildLock(build_dir, wait=wait, poll=poll)
    if Path(build_dir).is_dir():
        lock.acquire()
        lock.release()


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another run"
    run = f", flow run {holder['run']}" if holder.get("run") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{run}, started {holder.get('started')}"


class BuildLock:
    """``with BuildLock(dir, wait=60):`` waits up to ``wait`` seconds, then raises BuildLocked."""

    def __init__(self, build_dir: str | Path, *, wait: float = 0.0, run: str | None = None, poll: float = 0.5):
        self.build_dir, self.wait, self.run, self.poll = Path(build_dir), wait, run, poll
        self._file: Any = None

    def acquire(self) -> None:
        if self.build_dir.exists() and not self.build_dir.is_dir():
            raise UserError(f"{self.build_dir}: a file where the build's folder should be; move it away")
        self.build_dir.mkdir(parents=True, exist_ok=True)
        path = self.build_dir / LOCK_FILE
        if path.exists() and not path.is_file():
            raise UserError(f"{path}: not a file (a build's lock is a plain file); remove it")
        # "a": opening must not truncate the holder's note before we own the lock.
        f = path.open("a+")
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.close()
                    waited = f" after waiting {self.wait:g} s" if self.wait else ""
                    raise BuildLocked(
                        f"{self.build_dir} is being built by {describe(read_holder(self.build_dir))}{waited}; "
                        "let it finish, or wait for it (tinyforge build --wait SECONDS)"
                    ) from None
                time.sleep(self.poll)
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": self.run,
                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
