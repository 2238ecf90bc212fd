"""Ctrl-C during a build: the interrupt is remembered, so a flow that swallowed it still stops.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens
to be, and something on the way out of Prefect's engine can swallow it: in
about one of ten runs of the Ctrl-C test under the full suite the build went on
to the end, as if Ctrl-C had not been pressed (where it is lost was not found).
Here the signal is also recorded, and the build's runner checks it between
batches and before each step, raising the KeyboardInterrupt again where
nothing swallows it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_INTERRUPTED = threading.Event()


def install() -> None:
    """Remember every SIGINT this process gets (the main thread's handler; call it from there)."""
    signal.signal(signal.SIGINT, _remember)


def _remember(signum: int, frame: FrameType | None) -> None:
    _INTERRUPTED.set()
    signal.default_int_handler(signum, frame)  # the KeyboardInterrupt, as without this module


def check() -> None:
    """Raise KeyboardInterrupt if the process was interrupted, even if that interrupt was swallowed."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
