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
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.cli import RUNNERS_HELP
from pipeline.errors import UserError


ENV = "TINYFORGE_RUNNER"


def task_runner(spec: str | None = None) -> Any:
    """The Prefect task runner a ``--runner`` value names; by default the one $TINYFORGE_RUNNER names.

    The flows read the variable when they are imported, which is how runs that
    ``tinyforge serve --runner dask`` starts in their own processes get Dask too.
    """
    spec = (spec or os.environ.get(ENV) or "local").strip()
    if spec == "local":
        # One batch at a time: the embedded engine already spreads one batch over every core.
        return ThreadPoolTaskRunner(max_workers=1)
    if spec == "dask" or spec.startswith("dask:") or "://" in spec:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:  # pragma: no cover - prefect-dask is a pinned dependency
            raise UserError("the Dask runner needs prefect-dask: pip install prefect-dask") from None
        share_api_url()
        if "://" in spec:
            return DaskTaskRunner(address=spec)
        workers = spec.partition(":")[2] or str(min(2, os.cpu_count() or 1))
        if not workers.isdigit() or int(workers) < 1:
            raise UserError(f"--runner {spec}: the worker count must be a positive integer")
        # Processes, one thread each: a worker's engine uses the cores itself, and the
        # llama.cpp contexts are not shared between threads.
        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": int(workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    raise UserError(f"unknown runner {spec!r}: {RUNNERS_HELP}")


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


def start_local_api() -> None:
    """Start the temporary Prefect server a CLI build would start anyway, early, so workers can share it."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        server = SubprocessASGIServer()  # the same instance Prefect's own ephemeral mode uses
        server.start()
        os.environ["PREFECT_API_URL"] = server.api_url
