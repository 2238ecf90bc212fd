"""The cgroups a sandbox worker's programs run in, where this host lets us make them.

One per worker launch, made by the host before the worker starts and removed when it stops:

- **memory**: every process of a program together, SysV segments and files in its tmpfs
  included, is bounded by ``memory_mb`` (cgroup v1 ``memory.limit_in_bytes``, v2 ``memory.max``,
  swap off); the kernel's OOM killer then acts inside the program's cgroup only, and the worker
  reads its kill counter to call the program ``memory_exceeded``;
- **CPU time**: the exact CPU seconds of all its processes, dead ones included (v1
  ``cpuacct.usage``, or v2 ``cpu.stat``, which every v2 cgroup has without any controller).

A child of the worker joins them by writing ``0`` to their ``cgroup.procs`` before the program
runs (the worker opened those files while the host's filesystem was still in its view). Where
no cgroup can be made (not root, cgroup v2 without a delegated subtree), the worker counts CPU
from /proc and memory is bounded per process only: docs/sandbox.md says what holds then.

Where to make them: under this process's own cgroup in each hierarchy, or under
``$TINYFORGE_SANDBOX_CGROUP`` (a cgroup v2 directory delegated to us, with ``memory`` in its
``cgroup.subtree_control``) when it is set.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "tinyforge-sb-"  # then the host's pid and a counter: stale ones of dead hosts are removed
ENV_PARENT = "TINYFORGE_SANDBOX_CGROUP"


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and this process's cgroup in it."""

    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: the controllers bound to it; v2: those enabled for our children
    own: Path  # this process's cgroup directory in it


def _mounts() -> list[tuple[str, str, str, str]]:
    """(mount point, root inside the hierarchy, fs type, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4].replace("\\040", " "), fields[3], tail[0], tail[2]))
    return found


def _membership() -> dict[str, str]:
    """Our cgroup path per hierarchy, keyed by its controller list ("" for v2), from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted here that shows our own cgroup."""
    membership, found = _membership(), []
    for mount, root, fstype, options in _mounts():
        if fstype == "cgroup2":
            key = ""
            controllers = frozenset()
        else:
            names = [o for o in options.split(",") if o not in ("rw", "ro") and "=" not in o]
            if not names:
                continue  # a named hierarchy (name=systemd): no controller of use to us
            key = ",".join(sorted(names))
            key = next((k for k in membership if k and sorted(k.split(",")) == sorted(names)), key)
            controllers = frozenset(names)
        path = membership.get(key)
        if path is None or not (path + "/").startswith(root.rstrip("/") + "/"):
            continue  # this mount shows another part of the hierarchy than the one we are in
        own = Path(mount, path[len(root.rstrip("/")):].lstrip("/"))
        if own.is_dir():
            if fstype == "cgroup2":
                controllers = frozenset((own / "cgroup.subtree_control").read_text().split())
            found.append(Hierarchy(1 if fstype == "cgroup" else 2, controllers, own))
    return found


@dataclass
class ProgramCgroup:
    """The cgroup directories of one worker's programs, and what the worker needs to use them."""

    dirs: list[Path] = field(default_factory=list)
    join: list[str] = field(default_factory=list)  # cgroup.procs files a child writes 0 to
    oom: str | None = None  # memory.oom_control (v1) or memory.events (v2): the oom_kill counter
    cpu: str | None = None  # cpuacct.usage (v1, "ns") or cpu.stat (v2, "stat")
    cpu_format: str | None = None
    memory_bytes: int | None = None  # the bound on a program's memory, when there is one

    def worker_config(self) -> dict[str, object] | None:
        if not self.join:
            return None
        return {"join": self.join, "oom": self.oom, "cpu": self.cpu, "cpu_format": self.cpu_format}

    def remove(self, wait_s: float = 2.0) -> None:
        """Remove the directories once their processes are gone (the worker's namespace dies with it,
        but the kernel may take a moment to let the cgroup go)."""
        deadline = time.monotonic() + wait_s
        for d in reversed(self.dirs):
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        break  # left for the next sandbox's sweep of stale cgroups
                    time.sleep(0.01)
        self.dirs.clear()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _sweep(parent: Path) -> None:
    """Remove the empty cgroups that sandboxes of host processes no longer running left behind."""
    with contextlib.suppress(OSError):
        for d in parent.iterdir():
            if d.name.startswith(PREFIX):
                pid = d.name[len(PREFIX):].split("-")[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    with contextlib.suppress(OSError):
                        d.rmdir()


def _make(parent: Path, name: str, made: ProgramCgroup) -> Path | None:
    _sweep(parent)
    d = parent / name
    try:
        d.mkdir()
    except OSError:
        return None
    made.dirs.append(d)
    return d


def _memory_v1(h: Hierarchy, name: str, limit: int, made: ProgramCgroup) -> bool:
    d = _make(h.own, name, made)
    if d is None:
        return False
    try:
        _write(d / "memory.limit_in_bytes", str(limit))
        if (d / "memory.memsw.limit_in_bytes").exists():  # swap accounting: no swapping past the bound
            _write(d / "memory.memsw.limit_in_bytes", str(limit))
        _write(d / "memory.swappiness", "0")
    except OSError:
        pass  # the limit is what matters; swappiness is read-only under some hierarchies
    if int((d / "memory.limit_in_bytes").read_text()) > limit:
        return False
    made.join.append(str(d / "cgroup.procs"))
    made.oom = str(d / "memory.oom_control")
    made.memory_bytes = limit
    return True


def _v2_dir(parent: Path, name: str, made: ProgramCgroup, controller: str | None) -> Path | None:
    if controller and controller not in parent.joinpath("cgroup.subtree_control").read_text().split():
        try:
            _write(parent / "cgroup.subtree_control", f"+{controller}")
        except OSError:
            return None  # not delegated to us, or our cgroup holds processes (v2's no-internal-process rule)
    return _make(parent, name, made)


def _memory_v2(parent: Path, name: str, limit: int, made: ProgramCgroup) -> Path | None:
    d = _v2_dir(parent, name, made, "memory")
    if d is None:
        return None
    _write(d / "memory.max", str(limit))
    with contextlib.suppress(FileNotFoundError):  # no swap accounting on this kernel: nothing to turn off
        _write(d / "memory.swap.max", "0")
    made.join.append(str(d / "cgroup.procs"))
    made.oom = str(d / "memory.events")
    made.memory_bytes = limit
    return d


def program_cgroup(name: str, memory_bytes: int) -> ProgramCgroup:
    """Make the cgroups for one worker launch's programs, as far as this host allows: a memory bound and
    a CPU counter, each where a hierarchy lets us. An empty result means neither (the worker then falls
    back on rlimits and /proc)."""
    made = ProgramCgroup()
    try:
        found = hierarchies()
    except (OSError, ValueError):
        return made
    v2 = [h for h in found if h.version == 2]
    v1 = {c: h for h in found if h.version == 1 for c in h.controllers}
    delegated = os.environ.get(ENV_PARENT)
    v2_parent = Path(delegated) if delegated else v2[0].own if v2 else None
    v2_dir = None
    try:
        if "memory" in v1 and not delegated:
            _memory_v1(v1["memory"], name, memory_bytes, made)
        elif v2_parent is not None:
            v2_dir = _memory_v2(v2_parent, name, memory_bytes, made)
        if "cpuacct" in v1:
            d = _make(v1["cpuacct"].own, name, made)
            if d is not None:
                made.join.append(str(d / "cgroup.procs"))
                made.cpu, made.cpu_format = str(d / "cpuacct.usage"), "ns"
        elif v2_parent is not None:
            # cpu.stat is in every v2 cgroup, with or without controllers: the memory one counts CPU too
            d = v2_dir or _v2_dir(v2_parent, name, made, None)
            if d is not None:
                if v2_dir is None:
                    made.join.append(str(d / "cgroup.procs"))
                made.cpu, made.cpu_format = str(d / "cpu.stat"), "stat"
    except OSError:
        made.remove()
        return ProgramCgroup()
    return made
