"""Where a flow's batches run: in the flow's own process, or on a Dask cluster.

    local                  one batch at a time in this process (the default)
    dask                   a distributed.LocalCluster started for the run
    dask:4                 ... with 4 worker processes
    tcp://host:8786        an existing Dask scheduler (``dask scheduler`` / ``dask worker``)

Only batches are distributed; gathering, filtering, dedup, scoring and
publishing stay in the flow's process. Dask workers write their batch's part
files into the build directory, so on a cluster that spans machines
``output_root`` must be a filesystem every worker mounts (NFS, a mounted
bucket); see docs/operations.md.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pipeline.errors import UserError

ENV = "TINYFORGE_RUNNER"
DASK_SCHEMES = ("tcp", "tls", "ws", "wss")
RUNNERS_HELP = "local (default), dask, dask:N (a local Dask cluster of N processes) or tcp://HOST:PORT"


@dataclass(frozen=True)
class RunnerSpec:
    kind: Literal["local", "dask"]
    workers: int = 1  # of a local Dask cluster
    address: str | None = None  # of an existing Dask scheduler


def parse_runner(spec: str | None = None) -> RunnerSpec:
    """What a ``--runner`` value (default: $TINYFORGE_RUNNER, else local) names; UserError if nothing."""
    spec = (spec or os.environ.get(ENV) or "local").strip()
    if spec == "local":
        return RunnerSpec("local")
    if "://" in spec:
        parts = urlsplit(spec)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in DASK_SCHEMES or not parts.hostname or port is None:
            raise UserError(f"--runner {spec}: a Dask scheduler's address is tcp://HOST:PORT")
        return RunnerSpec("dask", address=spec)
    if spec == "dask" or spec.startswith("dask:"):
        workers = spec.partition(":")[2] or str(min(2, os.cpu_count() or 1))
        if not workers.isdigit() or int(workers) < 1:
            raise UserError(f"--runner {spec}: the worker count must be a positive integer")
        return RunnerSpec("dask", workers=int(workers))
    raise UserError(f"unknown runner {spec!r}: {RUNNERS_HELP}")


def check_scheduler(runner: RunnerSpec, timeout_s: float = 5.0) -> None:
    """UserError, at once, when the scheduler a ``--runner`` address names does not answer: a build would
    otherwise wait for Dask's own 30 s connect timeout and fail with its traceback."""
    if runner.address is None:
        return
    parts = urlsplit(runner.address)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"--runner {runner.address}: no Dask scheduler answers there ({exc.strerror or exc})") \
            from None


def task_runner(spec: str | None = None) -> Any:
    """The Prefect task runner a ``--runner`` value names; by default the one $TINYFORGE_RUNNER names.

    The flows read the variable when they are imported, which is how runs that
    ``tinyforge serve --runner dask`` starts in their own processes get Dask too.
    """
    runner = parse_runner(spec)
    if runner.kind == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        # One batch at a time: the embedded engine already spreads one batch over every core.
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    share_api_url()
    if runner.address:
        return DaskTaskRunner(address=runner.address)
    # Processes, one thread each: a worker's engine uses the cores itself, and the
    # llama.cpp contexts are not shared between threads.
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


def share_api_url() -> None:
    """Tell Dask workers which Prefect API their task runs report to.

    Workers are other processes (on other machines, for a real cluster) and
    see only their environment; without ``PREFECT_API_URL`` each would start a
    temporary Prefect server of its own and the UI would never see its runs.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url:
        os.environ["PREFECT_API_URL"] = url
