"""Where the shared stages lived before each had a module of its own in ``pipeline.stages``: thin
re-exports for one release. Import from ``pipeline.stages.<stage>`` (and ``pipeline.stages.base``)."""

from pipeline.stages.base import (
    ROWS_PER_CHUNK,
    ROWS_PER_SLICE,
    Pairs,
    Stage,
    Verdicts,
    iter_rows,
    record_stage,
    stage_frame,
    table_stage,
)
from pipeline.stages.decontaminate import decontaminate, decontaminate_stage, decontamination_sentence
from pipeline.stages.dedup import dedup, dedup_stage
from pipeline.stages.fluency import fluency, fluency_stage
from pipeline.stages.judge import JUDGE_COLUMNS, judge, judge_columns, judge_fields, judge_stage
from pipeline.stages.prospect import prospect, prospect_stage
from pipeline.stages.publish import (
    FIGURE_TITLES,
    MODEL_FIELDS,
    build_figures,
    field_docs,
    publish_stage,
    shared_sections,
    write_published,
)
from pipeline.stages.score import difficulty_section, score, score_stage
from pipeline.stages.target import target_stage

__all__ = [
    "FIGURE_TITLES", "JUDGE_COLUMNS", "MODEL_FIELDS", "ROWS_PER_CHUNK", "ROWS_PER_SLICE", "Pairs", "Stage",
    "Verdicts", "build_figures", "decontaminate", "decontaminate_stage", "decontamination_sentence", "dedup",
    "dedup_stage", "difficulty_section", "field_docs", "fluency", "fluency_stage", "iter_rows", "judge",
    "judge_columns", "judge_fields", "judge_stage", "prospect", "prospect_stage", "publish_stage",
    "record_stage", "score", "score_stage", "shared_sections", "stage_frame", "table_stage", "target_stage",
    "write_published",
]
