"""The mix kind: the three demo datasets (made small, tests/golden.py) mixed at a stated ratio, lineage
kept, sources verified before anything is written, shortfalls said, duplicates across sources removed."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from pipeline.errors import RecipeError
from pipeline.kinds import run_build
from pipeline.mix.allocate import allocate, within_budget
from pipeline.fluency import FluencyConfig
from pipeline.recipe import load_recipe
from pipeline.shards import read_split, verify_dataset
from tests.conftest import write_recipe
from tests.golden import SMALL, load_completions, small_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three demo builds, small, from their captured completions (no model call; fluency and IFD off
    for time: the mix carries the scores a source has, whatever they are)."""
    out = {}
    for kind in SMALL:
        where = tmp_path_factory.mktemp(kind)
        recipe = load_recipe(small_recipe(kind, where))
        recipe = recipe.model_copy(update={"fluency": FluencyConfig(enabled=False),
                                           "difficulty": recipe.difficulty.model_copy(update={"ifd": False})})
        load_completions(kind, where / "out")
        built = run_build(recipe)
        assert built.usage["model_calls"] == 0
        out[kind] = built.published.path
    return out


def mix_recipe(path: Path, sources: list[tuple[Path | str, str]], records: int | None = None,
               name: str = "mixed", extra: str = "") -> Path:
    """``sources``: (path, 'ratio = 2' or 'tokens = 300')."""
    blocks = "".join(f'\n[[sources]]\npath = "{p}"\n{amount}\n' for p, amount in sources)
    head = f"\n[mix]\nrecords = {records}\n" if records is not None else ""
    return write_recipe(path, f'name = "{name}"\nkind = "mix"\nseed = 5\noutput_root = "{path.parent / "out"}"\n'
                              f"{head}{blocks}\n[publish]\nvalidation_fraction = 0.0\n{extra}")


def published(recipe: Path) -> tuple[pl.DataFrame, dict]:
    result = run_build(load_recipe(recipe))
    ds = verify_dataset(result.published.path)
    return read_split(ds.path, "train"), ds.manifest


def test_three_demo_datasets_mix_at_the_stated_ratio_with_lineage(demos: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    paths = [demos["tinystories"], demos["tinygsm"], demos["evol_instruct"]]
    recipe = mix_recipe(tmp_path / "mix.toml", [(paths[0], "ratio = 1"), (paths[1], "ratio = 2"),
                                                (paths[2], "ratio = 4")], records=7,
                        extra='tokenizer = "smollm2-135m-instruct"\n')
    rows, manifest = published(recipe)
    counts = dict(rows.group_by("source").len().iter_rows())
    assert counts == {"tinystories-demo": 1, "tinygsm-demo": 2, "evol-demo": 4}  # 1 : 2 : 4 of 7
    assert rows["input_ids"].list.len().min() > 0

    for source, path in zip(manifest["sources"], paths, strict=True):  # each source's manifest, as it is
        assert source["manifest_sha256"] == hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
        assert source["build_id"] == json.loads((path / "manifest.json").read_text())["build_id"]
        assert source["short_by"] == 0
    originals = {p.parent.name: read_split(p, "train") for p in paths}
    for r in rows.iter_rows(named=True):  # every record is its source's record, as published there
        original = originals[r["source"]].filter(pl.col("id") == r["source_id"]).to_dicts()
        assert len(original) == 1, r["source_id"]
        o = original[0]
        assert r["source_build_id"] == o["build_id"] and r["difficulty"] == o.get("difficulty")
        if r["source_kind"] == "tinystories":
            assert (r["instruction"], r["response"], r["text"]) == (o["prompt"], o["story"], o["story"])
        elif r["source_kind"] == "tinygsm":
            assert r["text"] == f"{o['question']}\n\n{o['code']}" and r["code_difficulty"] == o["code_difficulty"]
        else:
            assert r["text"] == f"{o['instruction']}\n\n{o['response']}"
    assert main(["verify", str(tmp_path / "out" / "mixed" / "dataset")]) == 0
    report = (tmp_path / "out" / "mixed" / "dataset" / "report.md").read_text()
    assert "## Sources" in report and "| evol-demo | evol_instruct |" in report

    again = run_build(load_recipe(recipe))  # the same sources: everything reused
    assert again.reused and all(s.skipped for s in again.stages)


def test_a_source_that_cannot_fill_its_share_says_how_short_it_fell(demos: dict[str, Path], tmp_path: Path) -> None:
    recipe = mix_recipe(tmp_path / "mix.toml", [(demos["tinystories"], "ratio = 1"),
                                                (demos["evol_instruct"], "ratio = 1")], records=10)
    rows, manifest = published(recipe)
    stories = read_split(demos["tinystories"], "train").height
    assert rows.filter(pl.col("source") == "tinystories-demo").height == stories < 5
    assert rows.filter(pl.col("source") == "evol-demo").height == 5
    note = f"Source tinystories-demo was asked for 5 records (ratio 1.0) and had {stories} after deduplication: " \
           f"short by {5 - stories}."
    assert note in manifest["notes"] and note in (tmp_path / "out" / "mixed" / "dataset" / "README.md").read_text()


def test_records_two_sources_hold_are_kept_once(demos: dict[str, Path], tmp_path: Path) -> None:
    same = demos["evol_instruct"]
    recipe = write_recipe(tmp_path / "twice.toml", f"""
        name = "twice"
        kind = "mix"
        seed = 5
        output_root = "{tmp_path / 'out'}"
        [mix]
        records = 10
        [[sources]]
        path = "{same}"
        ratio = 1
        name = "first"
        [[sources]]
        path = "{same.as_uri()}"
        ratio = 1
        name = "again"
        [publish]
        validation_fraction = 0.0
        """)  # the second as a file:// URL: through fsspec
    rows, manifest = published(recipe)
    n = read_split(same, "train").height
    assert rows.filter(pl.col("source") == "first").height == n  # 5 asked: all it has
    assert rows.filter(pl.col("source") == "again").height == 0  # every one a duplicate of the first's
    rejected = pl.read_parquet(tmp_path / "out" / "twice" / "dataset" / "rejected.parquet")
    assert rejected.filter(pl.col("reason") == "exact_duplicate").height == n
    assert manifest["sources"][1]["path"] == same.as_uri()


def test_a_token_budget_takes_records_while_they_fit(demos: dict[str, Path], tmp_path: Path) -> None:
    recipe = mix_recipe(tmp_path / "mix.toml", [(demos["evol_instruct"], "tokens = 400")])
    rows, manifest = published(recipe)
    (given,) = manifest["sources"]
    assert rows["num_tokens"].sum() == given["taken_tokens"] <= 400 and rows.height == given["taken"]
    assert rows.height < read_split(demos["evol_instruct"], "train").height  # the budget, not the source, ended it


def test_a_corrupted_source_is_refused_before_anything_is_written(prefect_server: str, demos: dict[str, Path],
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "tinygsm-demo" / "dataset"
    shutil.copytree(demos["tinygsm"], bad)
    shard = bad / json.loads((bad / "manifest.json").read_text())["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    recipe = mix_recipe(tmp_path / "mix.toml", [(demos["tinystories"], "ratio = 1"), (bad, "ratio = 1")], records=4)
    capsys.readouterr()
    assert main(["build", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyforge: error: mix source 'tinygsm-demo'")
    assert "sha256 does not match the manifest" in err[0] and "Traceback" not in err[0]
    stages = tmp_path / "out" / "mixed" / "stages"
    assert not (stages / "sources").exists() and not (tmp_path / "out" / "mixed" / "dataset").exists()


@pytest.mark.parametrize(("sources", "records", "message"), [
    ([("{missing}", "ratio = 1")], 2, "sources.0.path: no published dataset at"),
    ([("{stories}", "ratio = 1"), ("{stories}", "tokens = 5")], 2, "give every source a ratio, or every source"),
    ([("{stories}", "ratio = 1")], None, "mix.records: the number of records the ratios share is missing"),
    ([("{stories}", "ratio = 1\ntokens = 3")], 2, "either a ratio or a token budget"),
])
def test_bad_mix_recipes_are_one_line(demos: dict[str, Path], tmp_path: Path, sources: list, records: int | None,
                                      message: str) -> None:
    fill = {"missing": tmp_path / "nowhere" / "dataset", "stories": demos["tinystories"]}
    recipe = mix_recipe(tmp_path / "bad.toml", [(p.format(**fill), a) for p, a in sources], records=records)
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")) as exc:
        load_recipe(recipe)
    assert "\n" not in str(exc.value)


def test_a_source_of_an_unknown_kind_or_without_its_columns_is_refused(demos: dict[str, Path], tmp_path: Path) -> None:
    from pipeline.errors import UserError

    odd = tmp_path / "odd" / "dataset"
    shutil.copytree(demos["tinystories"], odd)
    manifest = json.loads((odd / "manifest.json").read_text())
    (odd / "manifest.json").write_text(json.dumps({**manifest, "kind": "poems"}))
    recipe = mix_recipe(tmp_path / "mix.toml", [(odd, "ratio = 1")], records=1)
    with pytest.raises(UserError, match=r"mix source 'odd' .*kind 'poems': a mix reads .*tinystories"):
        run_build(load_recipe(recipe))


def test_shares_are_within_one_record_and_sum_to_the_total() -> None:
    rng = random.Random(3)
    for _ in range(500):
        weights = [rng.uniform(0.01, 5) for _ in range(rng.randint(1, 6))]
        total = rng.randint(0, 1000)
        counts = allocate(total, weights)
        assert sum(counts) == total
        assert all(abs(c - total * w / sum(weights)) < 1 for c, w in zip(counts, weights, strict=True))
    assert allocate(12, [3, 2, 1]) == [6, 4, 2] and allocate(2, [1, 1, 1]) == [1, 1, 0]
    import numpy as np

    assert within_budget(np.array([100, 200, 50, 400]), 350) == 3 and within_budget(np.array([500]), 350) == 0


def test_a_mix_of_a_mix_keeps_each_records_text(demos: dict[str, Path], tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    first = mix_recipe(tmp_path / "a" / "mix.toml", [(demos["tinystories"], "ratio = 1"),
                                                     (demos["tinygsm"], "ratio = 1")], records=2, name="first")
    rows, _ = published(first)
    again = mix_recipe(tmp_path / "b" / "mix.toml", [(tmp_path / "a" / "out" / "first" / "dataset", "ratio = 1")],
                       records=rows.height, name="again")
    remixed, manifest = published(again)
    assert manifest["sources"][0]["kind"] == "mix" and set(remixed["source_kind"]) == {"mix"}
    assert sorted(remixed["text"]) == sorted(rows["text"])  # a story stays a story, not prompt + story
    assert sorted(remixed["source_id"]) == sorted(rows["id"])
