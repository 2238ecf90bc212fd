"""The mix kind: a mixture of published datasets, by ratio or token budget, with lineage (docs/mix.md).

sources (read and verified, each in a seeded order) -> dedup (across the sources) -> sample (each source's
share, in its order) -> publish (schemas/mix.v1.json).
"""
