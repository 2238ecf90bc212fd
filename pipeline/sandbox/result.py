"""What running one program gives back: a status, its output, and its ``result`` as a JSON value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATUSES = ("ok", "error", "timeout", "memory_exceeded", "output_exceeded", "killed")

# A JSON value as the host accepts it from a program (pipeline.sandbox.values checks it):
# None, bool, a 64-bit int, a finite float, valid UTF-8 text, or lists and string-keyed dicts of them.
JsonValue = Any


@dataclass(frozen=True, slots=True)
class RunResult:
    status: str  # one of STATUSES
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0  # wall-clock seconds
    value: JsonValue = None  # the program's module-level `result`, if it set one and it is JSON
    value_repr: str | None = None  # repr of `result` when it is not JSON (or not finite)
    error: str | None = None  # why a non-ok program failed, in one line
    exit_code: int | None = None
    signal: int | None = None
    cpu_s: float = 0.0  # CPU seconds of every process the program ran, together

    @property
    def ok(self) -> bool:
        return self.status == "ok"
