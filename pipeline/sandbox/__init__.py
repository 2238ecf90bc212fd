"""Sandboxed execution of untrusted Python: namespaces, rlimits, CPU and memory bounds, JSON results."""

from pipeline.sandbox.result import STATUSES, RunResult
from pipeline.sandbox.sandbox import Sandbox, SandboxUnavailable, sandbox_available

__all__ = ["STATUSES", "RunResult", "Sandbox", "SandboxUnavailable", "sandbox_available"]
