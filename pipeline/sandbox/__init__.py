"""Sandboxed execution of untrusted Python: namespaces, rlimits, a wall clock, JSON results."""

from pipeline.sandbox.sandbox import STATUSES, RunResult, Sandbox, SandboxUnavailable, sandbox_available

__all__ = ["STATUSES", "RunResult", "Sandbox", "SandboxUnavailable", "sandbox_available"]
