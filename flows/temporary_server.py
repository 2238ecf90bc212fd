"""The temporary Prefect server of a build that has no ``PREFECT_API_URL``, bound to die with the build.

Prefect's ephemeral mode starts a uvicorn child and stops it from an
``atexit`` hook. A build that dies without running its hooks (SIGKILL, a
segfault in native code, the OOM killer) left that server behind, holding a
port: five orphans after one afternoon on a machine where llama.cpp
crashed. Here the server is started with ``PR_SET_PDEATHSIG``, so the
kernel kills it the moment its parent dies, however it dies; and in a
process group of its own, so Ctrl-C reaches the build alone, which stops
the server once it has recorded how the run ended.

It is registered as Prefect's default instance, so every Prefect client in
the process (flows, events, logs) talks to this one instead of spawning a
second, unbound server.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import prefect
from prefect.settings import get_current_settings

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGKILL when ``parent`` (the process that forked it) dies."""

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


@functools.cache
def server_class() -> type[SubprocessASGIServer]:
    """:class:`TemporaryServer`, defined on first use: ``prefect.server.api.server`` imports the whole server
    application (1.5 s on 2 cores), which a build that reports to a configured server never needs."""
    from prefect.server.api.server import SubprocessASGIServer

    class TemporaryServer(SubprocessASGIServer):
        """Prefect's ``SubprocessASGIServer`` whose uvicorn process cannot outlive the process that started it.

        The death signal follows the *thread* that forked the child, so start it
        from a thread that lives as long as the build: the main thread.
        """

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # The command and environment of Prefect 3.8's SubprocessASGIServer; only preexec_fn is ours.
            server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                          "PREFECT__SERVER_FINAL": "1"}
            settings = get_current_settings().to_environment_variables(exclude_unset=True)
            return subprocess.Popen(
                args=[sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                      "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                      "--log-level", "error", "--lifespan", "on"],
                env={**os.environ, **server_env, **settings},
                preexec_fn=die_with(os.getpid()),
                # Its own process group: Ctrl-C in the terminal interrupts the build, which then stops its
                # server; a server interrupted with the build died first and left the build's last log
                # lines and state updates retrying against a closed port.
                process_group=0,
            )

    return TemporaryServer


def start_temporary_server() -> str | None:
    """Start the build's own Prefect server unless one is configured; return its API URL (None if configured).

    Sets ``PREFECT_API_URL`` so that child processes (Dask workers) report to it too.
    """
    if get_current_settings().api.url:
        return None
    server = server_class()()  # Prefect's default (port None) instance from now on
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    return server.api_url
