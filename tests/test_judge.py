"""The LLM judge: reading verdicts, retrying what cannot be read, and the judge stage in real builds, on the
embedded model and through a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import BuildFailed
from pipeline.judge import column, failed_threshold, parse_verdict
from pipeline.recipe import load_recipe
from pipeline.tinygsm.rubric import MATH
from pipeline.tinystories.rubric import STORIES
from pipeline.shards import read_split, verify_dataset
from tests.conftest import part_recipe, recipe_seed, write_recipe


def test_a_verdict_is_read_from_json_fenced_or_not_and_from_plain_lines() -> None:
    want = {"grammar": 7, "creativity": 5, "consistency": 8, "age_group": "B"}
    assert parse_verdict('{"grammar": 7, "creativity": 5, "consistency": 8, "age_group": "B"}', STORIES) == want
    assert parse_verdict('Sure!\n```json\n{"grammar": "7", "creativity": 5.0, "consistency": 8, '
                         '"age_group": "b"}\n```', STORIES) == want
    assert parse_verdict("Grammar: 7\ncreativity = 5\n- consistency: 8\nage_group: B (4-5)", STORIES) == want


def test_what_is_not_a_verdict_says_why_and_is_never_a_score() -> None:
    assert parse_verdict('{"grammar": 11, "creativity": 5, "consistency": 8, "age_group": "B"}', STORIES) == \
        "grammar = 11 is not an integer from 1 to 10"
    assert parse_verdict('{"grammar": 7, "creativity": 5, "age_group": "Z"}', STORIES) == \
        "consistency is missing; age_group = 'Z' is not one of A | B | C | D | E | F"
    assert parse_verdict('{"well_posed": 7.5, "answers_question": true}', MATH) == \
        "well_posed = 7.5 is not an integer from 1 to 10; answers_question = True is not a number"
    assert parse_verdict("I think this story is lovely.", STORIES).startswith("no verdict in the reply ('I think")
    assert parse_verdict("", STORIES) == "an empty reply"
    assert parse_verdict('{"grammar": 7, "creat', STORIES) == \
        "creativity is missing; consistency is missing; age_group is missing"  # cut off at max_tokens


def test_thresholds_name_the_first_failing_criterion_and_a_missing_verdict() -> None:
    scores = {"grammar": 7, "creativity": 3, "consistency": 2, "age_group": "B"}
    assert failed_threshold(scores, {"consistency": 5, "creativity": 4}, STORIES) == "creativity"
    assert failed_threshold(scores, {"grammar": 7}, STORIES) is None
    assert failed_threshold(None, {"grammar": 7}, STORIES) == "no_verdict"
    assert failed_threshold(None, {}, STORIES) is None


def test_every_kind_has_a_rubric_and_its_schema_declares_every_column() -> None:
    from pipeline.kinds import get_kind, kind_names
    from pipeline.schema import load_schema

    judged = [get_kind(name) for name in kind_names() if get_kind(name).rubric is not None]
    assert {k.rubric.kind for k in judged} == {k.name for k in judged} and len(judged) == 3  # (a mix has none)
    for kind in judged:
        props = load_schema(kind.schema_id).document["properties"]
        assert {*kind.rubric.columns(), "judge_model", "judge_error"} <= set(props)


def test_an_unknown_criterion_in_a_threshold_is_a_recipe_error(tmp_path: Path) -> None:
    from pipeline.errors import UserError

    path = write_recipe(tmp_path / "r.toml", """
        name = "r"
        kind = "tinystories"
        [generate]
        count = 2
        [judge]
        enabled = true
        [judge.min]
        fluency = 5
    """)
    with pytest.raises(UserError, match=r"judge.min: no criterion 'fluency' in the tinystories rubric "
                                        r"\(grammar, creativity, consistency\)"):
        load_recipe(path)


def judged_recipe(tmp_path: Path, judge: str) -> Path:
    from tests.replay import preload_stories

    path = part_recipe(tmp_path / "judged.toml", "judged", recipe_seed(11), 4, "summary_fraction = 0.0",
                       "[judge]\nenabled = true\n" + judge)
    preload_stories(path, range(4))  # the stories are fixed; the judge is the model at work
    return path


def _build(path: Path):
    from pipeline.kinds import InProcess, run_build

    return run_build(load_recipe(path), InProcess(echo=lambda _: None))


@pytest.mark.slow
def test_the_embedded_judge_grades_every_story_and_thresholds_reject_with_the_scores(tmp_path: Path) -> None:
    ds = verify_dataset(_build(judged_recipe(tmp_path, "")).published.path)
    judge = next(s for s in ds.manifest["stages"] if s["name"] == "judge")["stats"]
    # a grammar-constrained verdict always parses: one call per story, no retries
    assert judge["judged"] == 4 and judge["unread"] == 0 and judge["usage"]["model_calls"] == 4
    rows = read_split(ds.path, "train")
    assert rows.height == 4 and rows["judge_error"].is_null().all()
    assert rows["judge_model"].str.starts_with("llamacpp/").all()
    for name in ("grammar", "creativity", "consistency"):
        assert rows[column(name)].is_between(1, 10).all()
    assert set(rows[column("age_group")]) <= set("ABCDEF")
    report = (ds.path / "report.md").read_text()
    assert "## Judge" in report and "| consistency |" in report and "plots/judge_grammar.png" in report

    # The embedded judge gives every story much the same score, so a threshold over its own verdicts
    # would reject none. The verdicts in the cache are replaced with known ones (consistency 2, 4, 6, 8
    # by story id): a threshold of 5 must then reject exactly the two stories below it, from the cache.
    want = give_verdicts(tmp_path / "out", rows)
    outcome = _build(judged_recipe(tmp_path, "[judge.min]\nconsistency = 5\n"))
    ds = verify_dataset(outcome.published.path)
    judge = next(s for s in ds.manifest["stages"] if s["name"] == "judge")["stats"]
    assert judge["usage"]["model_calls"] == 0 and judge["usage"]["cache_hits"] == 4
    kept = read_split(ds.path, "train")
    rejected = pl.read_parquet(ds.path / "rejected.parquet").filter(pl.col("stage") == "judge")
    assert set(kept["id"]) == {i for i, x in want.items() if x >= 5} and len(kept) == 2
    assert dict(zip(kept["id"], kept[column("consistency")], strict=True)) == {i: x for i, x in want.items() if x >= 5}
    assert set(rejected["id"]) == {i for i, x in want.items() if x < 5} and len(rejected) == 2
    for i, reason, detail in rejected.select("id", "reason", "detail").iter_rows():
        assert reason == "judge:consistency"
        assert detail == f"consistency {want[i]} < 5; grammar=6 creativity=6 consistency={want[i]} age_group=C"


def give_verdicts(output_root: Path, rows: pl.DataFrame) -> dict[str, int]:
    """Rewrite the cached judge replies of the stories in ``rows``: consistency 2, 4, 6, 8 in id order, the
    other criteria 6, 6 and C. Returns {id: consistency}."""
    import sqlite3

    from pipeline.llm import cache_path

    stories = dict(zip(rows["id"], rows["story"], strict=True))
    want = {i: 2 + 2 * k for k, i in enumerate(sorted(stories))}
    db = sqlite3.connect(cache_path(output_root))
    replaced = 0
    for key, request in db.execute("SELECT key, request_json FROM completions").fetchall():
        judged = [i for i, story in stories.items() if json.dumps(story)[1:-1] in request and "consistency" in request]
        if len(judged) == 1:
            verdict = {"grammar": 6, "creativity": 6, "consistency": want[judged[0]], "age_group": "C"}
            db.execute("UPDATE completions SET text = ? WHERE key = ?", (json.dumps(verdict), key))
            replaced += 1
    db.commit()
    db.close()
    assert replaced == len(stories)
    return want


@pytest.mark.slow  # the generate stage opens the embedded model, though every story is in the cache
def test_through_a_server_a_verdict_that_cannot_be_read_is_retried_then_recorded(tmp_path: Path) -> None:
    from tests.servers import ScriptedServer, chat_reply

    # A judge on 127.0.0.1 whose every reply is cut off at its token budget, as a model's is when
    # max_tokens cannot hold a whole verdict: every story is asked three times (the first try and two
    # retries), then kept with its reason and no scores.
    cut_off = chat_reply('{"grammar": 7, "creat', finish="length", completion_tokens=3)
    with ScriptedServer(lambda body, seen: (200, {}, cut_off)) as server:
        backend = (f'[judge.backend]\nkind = "openai"\nbase_url = "{server.url}"\nmodel = "judge"\n'
                   f'api_key_env = "NONE"\n')
        cut = judged_recipe(tmp_path, f"retries = 2\n[judge.sampling]\nmax_tokens = 3\ntemperature = 0.0\n{backend}")
        ds = verify_dataset(_build(cut).published.path)
        judge = next(s for s in ds.manifest["stages"] if s["name"] == "judge")["stats"]
        assert judge["judged"] == 4 and judge["unread"] == 4 and judge["usage"]["model_calls"] == 4 * 3
        assert sum(server.requests.values()) == 4 * 3
        rows = read_split(ds.path, "train")
        assert rows.height == 4 and rows[column("grammar")].is_null().all()
        assert rows["judge_error"].str.starts_with("no verdict after 3 tries: ").all()
        assert rows["judge_model"].str.starts_with("openai/judge@").all()

        # the same verdicts with a threshold: no score is guessed, so every story is rejected as unread and
        # the build has nothing to publish
        again = judged_recipe(tmp_path, f"retries = 2\n[judge.min]\ngrammar = 2\n[judge.sampling]\n"
                                        f"max_tokens = 3\ntemperature = 0.0\n{backend}")
        with pytest.raises(BuildFailed, match="nothing to publish: no record survived the build"):
            _build(again)
    stage = json.loads((tmp_path / "out" / "judged" / "stages" / "judge" / "_stage.json").read_text())["stats"]
    assert stage["usage"]["model_calls"] == 0 and stage["usage"]["cache_hits"] == 12  # asked nothing twice
    rejected = pl.read_parquet(tmp_path / "out" / "judged" / "stages" / "judge" / "rejected.parquet")
    assert rejected.height == 4 and set(rejected["reason"]) == {"judge:no_verdict"}
    assert rejected["detail"].str.starts_with("no verdict after 3 tries").all()
