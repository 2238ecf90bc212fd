"""Prefect orchestration over the ``pipeline`` library: the one build flow, deployments, the CLI.

``flow_for(kind)`` is the flow that builds a recipe of that kind (``flows.build``;
importing it imports Prefect). The ``tinyforge`` command is ``flows.cli``.
"""

from __future__ import annotations

from typing import Any


def flow_for(kind: str) -> Any:
    """The Prefect flow that builds a recipe of this kind (importing it, and so Prefect)."""
    from flows.build import flow_for as _flow_for

    return _flow_for(kind)
