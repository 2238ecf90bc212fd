"""Stages: the build directory and its results (:mod:`~pipeline.stages.build_dir`), the stage contract
(:mod:`~pipeline.stages.base`), and one module per stage every kind may use, its version, the recipe
parts it reads and what it adds beside its code (dedup, decontaminate, fluency, judge, score, prospect,
target, publish). A stage's config model lives with the code that reads it (``DedupConfig`` in
``pipeline.dedup``).

Importing this package loads the build directory alone; a stage module is imported by name.
"""

from pipeline.stages.build_dir import (
    STAGE_META,
    BuildDir,
    PartStore,
    StageResult,
    concat,
    disk_errors,
    release_memory,
    replace_dir,
    write_json_atomic,
    write_parquet_atomic,
    write_parquet_slices,
)

__all__ = [
    "STAGE_META", "BuildDir", "PartStore", "StageResult", "concat", "disk_errors", "release_memory",
    "replace_dir", "write_json_atomic", "write_parquet_atomic", "write_parquet_slices",
]
