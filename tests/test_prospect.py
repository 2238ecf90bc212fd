"""One-shot prospecting with the embedded model: the prefix-reuse losses are a whole pass's, a helpful
example outscores gibberish, and a build scores its sample and says what it cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.difficulty.ifd import LlamaScorer
from pipeline.difficulty.prospect import load_tasks, prospect_scores, shot
from pipeline.errors import UserError
from pipeline.paths import PROSPECT_TASKS_FILE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scorer() -> LlamaScorer:
    return LlamaScorer()


def test_a_continuation_after_a_shared_prefix_scores_as_the_whole_sequence(scorer: LlamaScorer) -> None:
    task = load_tasks(PROSPECT_TASKS_FILE)[0]
    prefix = scorer.start() + scorer.tokens(shot("Write one sentence about a cat.", "The cat slept."), bos=False)
    rest = [scorer.tokens(shot(task.instruction) + task.response, bos=False), scorer.tokens("Hello there.", bos=False)]
    parts = scorer.continuation_losses(prefix, rest)
    for cont, losses in zip(rest, parts, strict=True):  # each as if the prefix had been evaluated with it
        whole = scorer.losses(prefix + cont)[len(prefix) - 1 :]
        assert np.allclose(losses, whole, atol=1e-4) and len(losses) == len(cont)


def test_a_clear_example_helps_more_tasks_than_gibberish(scorer: LlamaScorer) -> None:
    tasks = load_tasks(PROSPECT_TASKS_FILE)[:6]
    good = ("Write one sentence about a cat.", "The small cat slept in the warm sun by the window.")
    junk = ("zxq blorp", "vzzt kkk ### ??? 1 1 1 1 qwerty uiop asdf ghjk")
    s = prospect_scores([good, junk], tasks, scorer)
    assert s.score[0] - s.score[1] >= 0.3 and s.gain[0] > 0 > s.gain[1]  # measured: 0.92 / 0.33 on 12 tasks
    assert s.zero_shot.shape == (6,) and np.isfinite(s.zero_shot).all()


def test_a_bad_task_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"instruction": "Say hi."}\n')
    with pytest.raises(UserError, match=r"tasks.jsonl:1: a task needs instruction and response"):
        load_tasks(bad)
    with pytest.raises(UserError, match="cannot read"):
        load_tasks(tmp_path / "missing.jsonl")


def test_a_build_scores_its_sample_and_says_what_it_cost(tmp_path: Path) -> None:
    from pipeline.kinds import run_build
    from pipeline.difficulty.config import ProspectConfig
    from pipeline.fluency import FluencyConfig
    from pipeline.recipe import load_recipe
    from pipeline.shards import read_split, verify_dataset
    from tests.golden import load_completions, small_recipe

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(line + "\n" for line in PROSPECT_TASKS_FILE.read_text().splitlines()[:3]))
    recipe = load_recipe(small_recipe("evol_instruct", tmp_path))
    recipe = recipe.model_copy(update={"fluency": FluencyConfig(enabled=False),
                                       "difficulty": recipe.difficulty.model_copy(update={"enabled": False}),
                                       "prospect": ProspectConfig(enabled=True, tasks=tasks, sample=2)})
    load_completions("evol_instruct", tmp_path / "out")
    built = run_build(recipe)
    assert built.usage["model_calls"] == 0
    stage = next(s for s in built.stages if s.name == "prospect")
    stats = stage.stats["prospect"]
    assert stats["tasks"] == 3 and stats["scored"] == 2 and stats["records"] == stage.stats["in"] > 2
    # the measured cost is the stage's own: its records' seconds fit within the stage's wall time
    assert 0 < stats["seconds_per_record"] * stats["scored"] <= stage.seconds, (stats, stage.seconds)
    ds = verify_dataset(built.published.path)
    import polars as pl

    rows = pl.concat([read_split(ds.path, s) for s in ("train", "validation") if s in ds.splits])
    scored = rows.filter(pl.col("prospect_score").is_not_null())
    assert scored.height == 2 and scored["prospect_gain"].is_not_null().all()  # prospect is the last stage
    report = (ds.path / "report.md").read_text()
    assert "## Prospecting" in report and "Scored 2 of" in report and "s a record" in report
