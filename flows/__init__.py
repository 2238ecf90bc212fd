"""Prefect flows: thin orchestration over the ``pipeline`` library.

Each corpus kind has one flow; ``FLOWS`` maps a recipe's ``kind`` to it and
``flow_for`` imports it. The ``tinyforge`` command is ``flows.cli``.
"""

import importlib

FLOWS = {
    "tinystories": "flows.tinystories:tinystories_flow",
    "tinygsm": "flows.tinygsm:tinygsm_flow",
    "evol_instruct": "flows.evolve:evolve_flow",
}


def flow_for(kind: str):
    """The Prefect flow that builds a recipe of this kind (importing it, and so Prefect)."""
    module, name = FLOWS[kind].split(":")
    return getattr(importlib.import_module(module), name)
