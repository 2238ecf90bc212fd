"""Evol-Instruct: evolve instructions over rounds with a small model, eliminate failures, keep lineage."""
