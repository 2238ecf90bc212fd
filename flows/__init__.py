"""Prefect flows: thin orchestration over the ``pipeline`` library.

Each corpus kind has one flow; ``FLOWS`` maps a recipe's ``kind`` to it.
"""

FLOWS = {
    "tinystories": "flows.tinystories:tinystories_flow",
    "tinygsm": "flows.tinygsm:tinygsm_flow",
    "evol_instruct": "flows.evolve:evolve_flow",
}
