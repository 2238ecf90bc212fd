"""``tinyforge doctor``: every native path on this machine, each in a child, a crash reported not inherited."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import doctor
from pipeline.doctor import Check, cpu_info, run_check

TINYFORGE = str(Path(sys.executable).parent / "tinyforge")


def _segfault() -> str:
    ctypes.string_at(0)  # a real SIGSEGV, as a miscompiled kernel would give
    return "unreachable"


def _raises() -> str:
    raise RuntimeError("this part is broken\nsecond line")


def _fine() -> str:
    return f"pid {os.getpid()}"


def test_a_crash_in_a_check_is_reported_and_this_process_survives() -> None:
    out = run_check(Check("crasher", "a null read", "reinstall it", _segfault))
    assert out.status == "crashed" and "SIGSEGV" in out.detail and "reinstall it" in out.detail


def test_a_failing_check_is_one_line_with_what_to_do() -> None:
    out = run_check(Check("broken", "something", "do this", _raises))
    assert out.status == "failed"
    assert out.detail == "RuntimeError: this part is broken; do this"


def test_each_check_runs_in_its_own_process() -> None:
    out = run_check(Check("fine", "nothing", "", _fine))
    assert out.ok and out.detail != f"pid {os.getpid()}"


def test_cpu_features_are_read_from_cpuinfo(tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512f amx_int8 amx_tile\n\n"
                    "processor\t: 1\nmodel name\t: Test CPU\nflags\t\t: fpu\n")
    info = cpu_info(fake)
    assert info.model == "Test CPU" and {"avx2", "amx_int8"} <= info.flags
    assert "avx2 avx512f amx_tile amx_int8" in info.line()


def test_an_unknown_check_is_a_user_error() -> None:
    p = subprocess.run([TINYFORGE, "doctor", "no-such-check"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown check 'no-such-check'" in p.stderr


@pytest.mark.slow
def test_every_native_part_works_on_this_machine() -> None:
    """The real command: llama.cpp without AMX, the engine, the 4-bit IFD path, tokenizer, MinHash, sandbox."""
    p = subprocess.run([TINYFORGE, "doctor"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    for check in doctor.CHECKS:
        assert any(line.split()[:1] == ["ok"] and check.name in line for line in p.stdout.splitlines()), p.stdout
    assert p.stdout.startswith("tinyforge doctor: ") and "all 6 checks passed" in p.stdout
