"""What a sandbox program pays before its first line, and why the worker preloads what it does.

The sandbox forks one child per program from a warm worker. Two costs pull
against each other:

- every module the worker preloads makes *every* fork and exit dearer (more
  memory mappings and heap for the kernel to copy and tear down, more pages
  for the child to copy on write);
- every module a program imports that was not preloaded costs that program
  an import in its child (reading and executing the module, in a child whose
  pages are all copy-on-write).

This prints both, measured here in one process: fork+exit of a bare
interpreter (the baseline) against the worker's own imports and then its
preloads; compile() of a small program with and without the AST types built;
and the median import time of each candidate module in a fresh child of a
worker-like process that has not preloaded it.

    .venv/bin/python -I -S benchmarks/sandbox_fork.py [--forks 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

SERVER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pipeline", "sandbox")

# Modules a worker-like process holds without preloading anything: the worker's own imports.
WORKER_IMPORTS = ("_signal", "ctypes", "json", "math", "mmap", "os", "resource", "select", "signal", "struct",
                  "sys", "time", "traceback")
CANDIDATES = ("typing", "math", "string", "copy", "random", "heapq", "bisect", "fractions", "decimal", "datetime",
              "statistics", "dataclasses", "textwrap", "calendar", "hashlib", "socket", "subprocess")

_FORK_LOOP = """
import os, sys, time
sys.path.insert(0, {server_dir!r})
stage = {stage!r}
if stage != "bare":
    import _server
    if stage != "server":
        for name in _server.PRELOADED:
            __import__(name)
    if stage == "subprocess":
        import subprocess
def loop(n):
    t = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t) / n
loop(20)
maps = len(open("/proc/self/maps").readlines())
anon = [l.split()[1] for l in open("/proc/self/status") if l.startswith("RssAnon")][0]
print(loop({forks}), maps, anon)
"""

_CHILD_COST = """
import os, sys, time
for name in {preloaded!r}:
    __import__(name)
def in_child(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        t = time.perf_counter()
        fn()
        os.write(w, repr(time.perf_counter() - t).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 64)
    os.waitpid(pid, 0)
    os.close(r)
    return float(out)
source = b"def f():\\n    boxes = 7\\n    return round(boxes * 3 / 4, 2)\\nresult = f()\\n"
times = sorted(in_child(lambda: compile(source, "<program>", "exec")) for _ in range(9))
print("compile", times[4])
for name in {candidates!r}:
    if name in sys.modules:
        print(name, "loaded")
        continue
    times = sorted(in_child(lambda: __import__(name)) for _ in range(9))
    print(name, times[4])
"""


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True,
                          timeout=600).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--forks", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each fork loop; the median is shown")
    args = ap.parse_args()

    stages = [("bare interpreter, `python -I -S` (baseline)", "bare"),
              ("+ the worker's own imports", "server"),
              ("+ PRELOADED (the worker as it serves)", "worker"),
              ("+ `subprocess` too (not preloaded: it brings `threading`'s after-fork hook)", "subprocess")]
    print(f"fork + exit, {args.forks} forks a run, median of {args.repeat} runs, Python {sys.version.split()[0]}\n")
    print("| process | maps | anonymous memory | fork + exit | vs baseline |")
    print("|---|---|---|---|---|")
    base = None
    for label, stage in stages:
        runs = [_python(_FORK_LOOP.format(server_dir=SERVER_DIR, stage=stage, forks=args.forks)).split()
                for _ in range(args.repeat)]
        secs = statistics.median(float(r[0]) for r in runs)
        base = base or secs
        print(f"| {label} | {runs[-1][1]} | {runs[-1][2]} kB | {secs * 1e6:.0f} us | {secs / base:.2f}x |")

    print("\ncompile() of a 4-line program in a child, and each module's import in a child (median of 9)\n")
    print("| in a child of the worker's own imports | without `_ast` preloaded | with `_ast` preloaded |")
    print("|---|---|---|")
    bare = dict(line.split() for line in _python(_CHILD_COST.format(preloaded=WORKER_IMPORTS,
                                                                     candidates=CANDIDATES)).splitlines())
    ast = dict(line.split() for line in _python(_CHILD_COST.format(preloaded=(*WORKER_IMPORTS, "_ast"),
                                                                    candidates=())).splitlines())
    print(f"| compile() | {float(bare['compile']) * 1e6:.0f} us | {float(ast['compile']) * 1e6:.0f} us |")
    print("\n| module | import in a child |")
    print("|---|---|")
    for name in CANDIDATES:
        cost = bare[name]
        print(f"| `{name}` | {'already loaded' if cost == 'loaded' else f'{float(cost) * 1e3:.2f} ms'} |")


if __name__ == "__main__":
    main()
