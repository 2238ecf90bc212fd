"""Ctrl-C is remembered: a build whose interrupt was swallowed still stops at its next batch or step."""

from __future__ import annotations

import os
import signal

import pytest

from flows import interrupt


def test_a_swallowed_interrupt_is_raised_again_at_the_next_check() -> None:
    before = signal.getsignal(signal.SIGINT)
    try:
        interrupt.install()
        interrupt.check()  # not interrupted: nothing happens
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # what a library on the way might do with it
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    finally:
        signal.signal(signal.SIGINT, before)
        interrupt._INTERRUPTED.clear()
