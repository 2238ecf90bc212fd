from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from pipeline.errors import RecipeError
from pipeline.recipe import load_recipe
from tests.conftest import REPO, write_recipe

GOOD = """
name = "ok"
kind = "tinystories"
[generate]
count = 3
"""


@pytest.mark.parametrize("name", ["tinystories-demo.toml", "tinystories.toml", "tinygsm-demo.toml", "tinygsm.toml"])
def test_shipped_recipes_validate(name: str) -> None:
    recipe = load_recipe(REPO / "flows" / "recipes" / name)
    assert recipe.kind == name.split("-")[0].removesuffix(".toml")
    assert recipe.output_root == REPO / "build"  # relative to the recipe file, not the cwd
    assert recipe.build_id.startswith(recipe.name + "-")


def test_build_id_ignores_where_files_live(tmp_path: Path) -> None:
    a = load_recipe(write_recipe(tmp_path / "a.toml", GOOD))
    (tmp_path / "sub").mkdir()
    b = load_recipe(write_recipe(tmp_path / "sub" / "a.toml", 'output_root = "elsewhere"\n' + GOOD))
    assert b.output_root == tmp_path / "sub" / "elsewhere"
    assert a.build_id == b.build_id
    c = load_recipe(write_recipe(tmp_path / "c.toml", GOOD.replace("count = 3", "count = 4")))
    assert c.build_id != a.build_id


BAD = {
    "unknown key": (GOOD.replace("count = 3", "count = 3\ncolour = 1"), "generate.colour: unknown key"),
    "negative count": (GOOD.replace("count = 3", "count = -3"), "generate.count: must be greater than 0 (got -3)"),
    "missing vocab": (GOOD + 'vocab_dir = "nowhere"\n', "generate.vocab_dir: missing vocabulary file"),
    "unknown backend": (GOOD + '[backend]\nkind = "gpt9"\n', "backend.kind: unknown backend 'gpt9'"),
    "unknown kind": (GOOD.replace('"tinystories"', '"poems"'), "kind: unknown recipe kind 'poems'"),
    "wrong type": (GOOD.replace("count = 3", 'count = "many"'), "generate.count:"),
    "missing section": ('name = "x"\nkind = "tinystories"\n', "generate: missing"),
    "bad name": (GOOD.replace('"ok"', '"Has Spaces"'), "name: 'Has Spaces' is not a build name"),
    "not toml": ("name = = 1", "not valid TOML"),
    "inverted bounds": (GOOD + "[filter]\nmin_words = 10\nmax_words = 5\n", "filter: min_words (10) is larger"),
    "missing seeds": ('name = "m"\nkind = "tinygsm"\n[generate]\ncount = 2\n[seeds]\npath = "none.jsonl"\n',
                      "seeds.path: no such seed file"),
    "missing eval set": ('name = "m"\nkind = "tinygsm"\n[generate]\ncount = 2\n[decontaminate]\n'
                         'eval_sets = [{path = "test.jsonl"}]\n', "decontaminate.eval_sets.0.path: no such file"),
    "engines without threads": (GOOD + "[backend]\nn_threads = 2\nengines = 4\n",
                                "backend: engines (4) is more than n_threads (2)"),
    "unknown weights": (GOOD + '[backend]\nweights = "q2"\n', "backend.weights:"),
    "bad structured dialect": (GOOD + '[backend]\nkind = "openai"\nbase_url = "http://x/v1"\nmodel = "m"\n'
                               'structured_output = "yaml"\n', "backend.structured_output:"),
    "bad agreement": ('name = "m"\nkind = "tinygsm"\n[generate]\ncount = 2\n[verify]\nmin_agreement = 1.5\n',
                      "verify.min_agreement: must be less than or equal to 1"),
    "bad cron": (GOOD + '[schedule]\ncron = "every night"\n', 'schedule.cron: Invalid cron string: "every night"'),
    "bad time zone": (GOOD + '[schedule]\ncron = "0 3 * * *"\ntimezone = "Mars/Olympus"\n',
                      "schedule.timezone: unknown time zone 'Mars/Olympus'"),
}


def test_schedule_and_cost_are_not_part_of_the_build_id(tmp_path: Path) -> None:
    plain = load_recipe(write_recipe(tmp_path / "a.toml", GOOD))
    served = load_recipe(write_recipe(tmp_path / "b.toml", GOOD + '[schedule]\ncron = "0 3 * * *"\n'
                                      '[cost]\ncompletion_per_million = 0.6\n'))
    assert served.schedule is not None and served.schedule.dated and served.cost.of(0, 2_000_000) == 1.2
    assert served.build_id == plain.build_id


def test_structured_output_true_means_the_standard_dialect(tmp_path: Path) -> None:
    from pipeline.llm.config import wants_structured_output

    body = GOOD + '[backend]\nkind = "openai"\nbase_url = "http://x/v1"\nmodel = "m"\nstructured_output = true\n'
    recipe = load_recipe(write_recipe(tmp_path / "s.toml", body))
    assert recipe.backend.structured_output == "json_schema" and wants_structured_output(recipe.backend)
    assert wants_structured_output(load_recipe(write_recipe(tmp_path / "d.toml", GOOD)).backend)  # embedded: on
    openai = GOOD + '[backend]\nkind = "openai"\nbase_url = "http://x/v1"\nmodel = "m"\n'
    assert not wants_structured_output(load_recipe(write_recipe(tmp_path / "o.toml", openai)).backend)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipe_is_one_clear_line(case: str, tmp_path: Path) -> None:
    body, expected = BAD[case]
    path = write_recipe(tmp_path / "bad.toml", body)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and str(path) in message


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.toml")


def test_cli_exit_code_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_recipe(tmp_path / "bad.toml", BAD["negative count"][0])
    assert main(["build", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tinyforge: error: ") and "Traceback" not in err


@pytest.mark.parametrize("case", ["unknown key", "negative count", "missing vocab", "unknown backend"])
def test_installed_command_rejects_bad_recipes(case: str, tmp_path: Path) -> None:
    """The real `tinyforge` entry point, as a user runs it."""
    path = write_recipe(tmp_path / "bad.toml", BAD[case][0])
    exe = Path(sys.executable).parent / "tinyforge"
    proc = subprocess.run([str(exe), "build", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert BAD[case][1] in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_table_prices_each_stage_that_called_a_model() -> None:
    from pipeline.report import usage_table

    used = {"model_calls": 3, "cache_hits": 1, "prompt_tokens": 1_000_000, "completion_tokens": 500_000}
    manifest = {"cost": {"prompt_per_million": 1.0, "completion_per_million": 2.0, "currency": "EUR"},
                "stages": [{"name": "generate", "stats": {"usage": used}}, {"name": "filter", "stats": {}}],
                "usage": used}
    rows = usage_table(manifest)
    assert [r["stage"] for r in rows] == ["generate", "total"]  # filter called no model
    assert rows[0]["cost (EUR)"] == "2.0000" and rows[0]["prompt tokens"] == 1_000_000
    assert usage_table({"stages": [], "usage": {}}) == [
        {"stage": "total", "model calls": 0, "cache hits": 0, "prompt tokens": 0, "completion tokens": 0,
         "retries": 0, "cost (USD)": "0.0000"}]
