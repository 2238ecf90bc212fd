"""``tinyforge doctor``: exercise every native path on this machine, each in a child process.

tinyforge leans on compiled code that is built for the CPU it meets
(llama.cpp, its own MinHash extension) and on kernel features (namespaces
for the sandbox). A part that is broken on a machine should be one line
naming it and what to do, never a core dump in the middle of a build. So
each check runs in a fresh interpreter: a segfault there is reported as
``crashed (SIGSEGV)`` here, and the checks after it still run.

    tinyforge doctor            the table; exit 1 if any check failed
    python -m pipeline.doctor   the same
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# The CPU features that decide which kernels llama.cpp and the compilers use.
FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
            "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
REINSTALL = "run `make install` (requirements/llama-cpp.sh compiles llama-cpp-python for this CPU without AMX)"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    what: str  # the native path it exercises, in a few words
    fix: str  # what to do when it fails
    run: Callable[[], str]  # returns a detail line; raises when the part does not work


@dataclass(frozen=True, slots=True)
class Outcome:
    check: str
    status: str  # "ok" | "failed" | "crashed" | "timeout"
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    def line(self) -> str:
        have = [f for f in FEATURES if f in self.flags]
        return f"{self.model}; {os.cpu_count()} cores; {' '.join(have) or 'no SIMD flags found'}"


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    model, flags = "unknown CPU", frozenset()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    return CpuInfo(model, flags)


# --- the checks: each runs in a child process -------------------------------------------------


def _llama_build() -> str:
    """llama-cpp-python was compiled without ggml's AMX path (it crashes on 4-bit matmuls, llama.cpp #20824)."""
    from pipeline.llm.llamacpp import lowlevel

    info = lowlevel().llama_print_system_info().decode(errors="replace")
    if "AMX_INT8 = 1" in info:
        raise RuntimeError("llama-cpp-python was compiled with ggml's AMX path, which crashes on 4-bit weights")
    # "CPU : SSE3 = 1 | AVX = 1 | ... | REPACK = 1 |"
    flags = [part.split(":")[-1].split("=")[0].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return "compiled kernels: " + " ".join(f for f in flags if f not in ("REPACK", "LLAMAFILE", "OPENMP"))


def _engine() -> str:
    from pipeline.llm import ChatRequest, Message, SamplingParams
    from pipeline.llm.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(n_ctx=256, parallel=2)
    try:
        params = SamplingParams(temperature=0.7, max_tokens=8)
        out = engine.generate([ChatRequest((Message("user", "Say hello."),), params, seed=i) for i in range(2)])
    finally:
        engine.close()
    tokens = sum(c.completion_tokens for cs in out for c in cs)
    if tokens == 0:
        raise RuntimeError("the engine generated no tokens")
    return f"{engine.engines} contexts on {engine.weights_path.name}: {tokens} tokens"


def _ifd_q4() -> str:
    from pipeline.difficulty.ifd import LlamaScorer, ifd_scores

    scores = ifd_scores([("Name a colour.", "Blue is a colour.")], LlamaScorer(n_ctx=128, n_threads=1))
    if not (scores.ifd[0] > 0):
        raise RuntimeError(f"IFD is not a positive number: {scores.ifd[0]!r}")
    return f"the shipped 4-bit file evaluates: IFD {scores.ifd[0]:.3f} on a sample pair"


def _tokenizer() -> str:
    from pipeline.tokenize import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    ids = tok.encode(["Once upon a time"])[0]
    if len(ids) < 3 or ids[-1] != tok.eos_id:
        raise RuntimeError(f"unexpected token ids {ids}")
    return f"vocab {tok.vocab_size}, {len(ids)} ids for a sample"


def _minhash() -> str:
    from pipeline.minhash import MinHasher, reference_signature

    texts = ["the cat sat on the mat and looked at the dog " * 3, "a small red ball rolled down the hill"]
    sig, keys = MinHasher(num_perm=64, threads=1).signatures_and_keys(texts)
    for i, text in enumerate(texts):
        ref, key = reference_signature(text, num_perm=64)
        if list(sig[i]) != ref or int(keys[i]) != key:
            raise RuntimeError("the C extension's signatures differ from the Python reference")
    return "C signatures equal the Python reference"


STDLIB_PROBE = ("hashlib", "statistics", "fractions", "decimal", "datetime", "sqlite3", "zlib", "bz2", "lzma",
                "unicodedata", "csv", "uuid", "ctypes")


def _sandbox() -> str:
    from pipeline.sandbox import Sandbox

    code = "".join(f"import {m}\n" for m in STDLIB_PROBE) + "result = hashlib.sha256(b'x').hexdigest()[:8]"
    with Sandbox(workers=1, timeout_s=10.0, startup_timeout_s=30.0) as sb:
        r = sb.run(code)
        limits = sb.limits()
    if not r.ok:
        raise RuntimeError(f"{r.status}: {r.error}")
    memory = "a program's memory bounded by a cgroup" if limits["memory_cgroup"] else \
        "memory bounded per process only (no cgroup here: docs/sandbox.md)"
    return f"a worker imports {len(STDLIB_PROBE)} stdlib modules (hashlib, sqlite3, lzma, ...); {memory}"


CHECKS: tuple[Check, ...] = (
    Check("llama.cpp build", "compiled kernels, no AMX", REINSTALL, _llama_build),
    Check("engine", "generation from float16 weights", REINSTALL, _engine),
    Check("IFD scorer", "the shipped 4-bit file, logits", REINSTALL, _ifd_q4),
    Check("tokenizer", "publish's input_ids (vocab only)", REINSTALL, _tokenizer),
    Check("MinHash extension", "pipeline._minhash (C)",
          "run `make install` to rebuild tinyforge's C extension (needs gcc and the Python headers)", _minhash),
    Check("sandbox", "namespaces, a worker, the stdlib",
          "the sandbox needs Linux namespaces (`unshare`) and a readable standard library; see docs/sandbox.md", _sandbox),
)
_BY_NAME = {c.name: c for c in CHECKS}


def _target(fn: Callable[[], str]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _child(target: str) -> int:
    """Run one check function (``module:name``) in this child process; its JSON verdict goes to stdout."""
    import importlib

    module, _, name = target.partition(":")
    try:
        detail, code = {"detail": getattr(importlib.import_module(module), name)()}, 0
    except BaseException as exc:  # a check's failure is data for the parent, whatever it is
        detail, code = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}, 1
    sys.stdout.flush()
    print("\n" + json.dumps(detail), flush=True)
    return code


def run_check(check: Check, timeout_s: float = 300.0) -> Outcome:
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline.doctor", "--child", _target(check.run)],
                              capture_output=True, text=True, timeout=timeout_s,
                              cwd=Path(__file__).resolve().parent.parent)
    except subprocess.TimeoutExpired:
        return Outcome(check.name, "timeout", f"no answer in {timeout_s:.0f} s; {check.fix}",
                       time.monotonic() - start)
    seconds = time.monotonic() - start
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return Outcome(check.name, "crashed", f"{name} in {check.what}; {check.fix}", seconds)
    try:
        verdict = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome(check.name, "failed", f"exit {proc.returncode}: {tail[:200]}; {check.fix}", seconds)
    if "error" in verdict:
        return Outcome(check.name, "failed", f"{verdict['error']}; {check.fix}", seconds)
    return Outcome(check.name, "ok", verdict["detail"], seconds)


def run_checks(names: Sequence[str] | None = None, on_outcome: Callable[[Outcome], None] | None = None
               ) -> list[Outcome]:
    outcomes = []
    for check in CHECKS if not names else [_BY_NAME[n] for n in names]:
        outcomes.append(run_check(check))
        if on_outcome:
            on_outcome(outcomes[-1])
    return outcomes


def format_row(o: Outcome) -> str:
    mark = "ok  " if o.ok else o.status.upper()
    return f"  {mark:<8} {o.check:<18} {o.seconds:5.1f}s  {o.detail}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--child"]:
        return _child(args[1])
    unknown = [n for n in args if n not in _BY_NAME]
    if unknown:
        print(f"tinyforge doctor: unknown check {unknown[0]!r} (checks: {', '.join(_BY_NAME)})", file=sys.stderr)
        return 2
    print(f"tinyforge doctor: {cpu_info().line()}", flush=True)
    outcomes = run_checks(args or None, on_outcome=lambda o: print(format_row(o), flush=True))
    bad = [o for o in outcomes if not o.ok]
    if bad:
        print(f"tinyforge doctor: {len(bad)} of {len(outcomes)} checks failed: {', '.join(o.check for o in bad)}",
              file=sys.stderr)
        return 1
    print(f"tinyforge doctor: all {len(outcomes)} checks passed")
    return 0


if __name__ == "__main__":
    from pipeline.doctor import main as _main  # the checks named by their importable module, not __main__

    sys.exit(_main())
