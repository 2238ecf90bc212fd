"""Real builds: the embedded model, a real Prefect server, the real command."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.recipe import load_recipe
from pipeline.shards import read_split, verify_dataset
from tests.conftest import TINYFORGE, instant_recipe, recipe_seed

pytestmark = pytest.mark.slow


def test_flow_generates_filters_dedups_and_publishes(prefect_server: str, tiny_recipe: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.build import flow_for


    tinystories_flow = flow_for("tinystories")

    result = tinystories_flow(recipe_path=str(tiny_recipe))
    ds = verify_dataset(result["dataset"])
    m = ds.manifest

    # the model really ran: the 3 stories not preloaded into the cache, plus the summaries the recipe asked for
    usage = result["run_usage"]
    assert usage["cache_hits"] == 1 and usage["model_calls"] >= 3 and usage["completion_tokens"] > 0
    assert m["models"][0].startswith("llamacpp/SmolLM2-135M-Instruct")
    published = sum(m["splits"][s]["rows"] for s in ds.splits)
    stages = {s["name"]: s for s in m["stages"]}
    assert stages["generate"]["stats"]["in"] == 4
    rejected = pl.read_parquet(ds.path / "rejected.parquet")
    assert published + rejected.height == 4  # every story is either published or rejected with a reason
    assert rejected.filter(pl.col("reason").is_null()).height == 0

    rows = pl.concat([read_split(ds.path, s) for s in ds.splits])
    assert rows.height >= 1  # at least the preloaded story, whatever the model wrote
    for r in rows.iter_rows(named=True):
        assert r["story"].strip() and r["build_id"] == m["build_id"]
        assert r["prompt"].startswith("Words to use: ") and all(f'"{w}"' in r["prompt"] for w in r["words"])
        assert r["sampling"]["max_tokens"] == 200 and r["dedup_cluster"] == r["id"]
    assert "# Build report: tiny" in (ds.path / "report.md").read_text()

    # difficulty scores from the proxy model (and IFD from the embedded one) on every record
    for r in rows.iter_rows(named=True):
        assert len(r["loss_trajectory"]) == 1 + 3 * 2 and 0.0 <= r["difficulty"] <= 1.0
        assert r["s2l_cluster"] is not None and r["ifd"] is not None and r["ic_ifd"] is not None
    assert m["schema"]["id"] == "tinystories.v4"
    # the proxy is the default architecture (d=128, 4 layers, 256 positions) over the BPE vocabulary it
    # trained on these stories: embeddings, per block 12d^2 + 9d (attention without biases, MLP, two
    # norms), the final norm; the output layer is tied to the embeddings
    proxy = m["difficulty"]["proxy"]
    d, layers, positions = 128, 4, 256
    assert 256 < proxy["vocab"] <= 2048
    assert proxy["parameters"] == (proxy["vocab"] + positions) * d + layers * (12 * d * d + 9 * d) + 2 * d
    # the fluency score (the embedded model's mean token loss) on every record, and which exemplars it saw
    for r in rows.iter_rows(named=True):
        assert 0.0 < r["fluency_loss"] < 20.0 and len(r["exemplar_ids"]) == 2
    assert "## Difficulty" in (ds.path / "report.md").read_text()

    report = Artifact.get("tiny-report")
    assert report is not None and "# Build report: tiny" in report.data
    stage_table = Artifact.get("tiny-stages")
    assert stage_table is not None and "generate" in stage_table.data
    usage = json.loads(Artifact.get("tiny-usage").data)
    assert usage[-1]["stage"] == "total" and usage[-1]["model calls"] == m["usage"]["model_calls"]
    assert usage[-1]["cost (USD)"] == "0.0000"  # the embedded model: no [cost] prices
    # plots: PNG files stored with the build, linked from report.md, inlined in the UI's copy
    assert set(m["plots"]) == {"length", "learning", "ifd"}
    for path in m["plots"].values():
        assert (ds.path / path).read_bytes().startswith(b"\x89PNG") and f"]({path})" in (ds.path / "report.md").read_text()
    assert report.data.count("](data:image/png;base64,") == 3
    progress = Artifact.get("tiny-generate-progress")
    assert progress is not None and float(progress.data) == 100.0

    # a second run regenerates nothing and rewrites nothing
    sha = [s["sha256"] for s in m["splits"]["train"]["shards"]]
    again = tinystories_flow(recipe_path=str(tiny_recipe))
    assert again["run_usage"]["model_calls"] == 0
    assert set(again["stages"].values()) == {"reused"}
    assert [s["sha256"] for s in verify_dataset(again["dataset"]).manifest["splits"]["train"]["shards"]] == sha


def test_changed_filter_reruns_only_downstream_stages(prefect_server: str, instant_url: str, tmp_path: Path) -> None:
    from flows.build import flow_for

    tinystories_flow = flow_for("tinystories")
    recipe = instant_recipe(tmp_path / "r.toml", instant_url, name="refilter", out=tmp_path / "out", count=8)
    first = tinystories_flow(recipe_path=str(recipe))
    assert first["run_usage"]["model_calls"] == 8
    recipe.write_text(recipe.read_text().replace("min_words = 5", "min_words = 6"))
    result = tinystories_flow(recipe_path=str(recipe))
    assert result["run_usage"]["model_calls"] == 0
    assert result["stages"] == {"generate": "reused", "filter": "ran", "decontaminate": "ran",
                                "fluency": "ran", "dedup": "ran", "judge": "ran", "score": "ran", "publish": "ran"}


def _cached(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def test_sigkill_during_generation_resumes_with_only_missing_calls(prefect_server: str, tmp_path: Path) -> None:
    from tests.instant_server import instant_server

    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    db = out / "cache" / "responses.sqlite"
    with instant_server(delay_ms=300) as url:  # a batch of 2 takes 0.3 s: the kill lands mid-generation
        recipe = instant_recipe(tmp_path / "kill.toml", url, name="killme", out=out, count=24, batch_size=2,
                                seed=recipe_seed(11))
        proc = subprocess.Popen([TINYFORGE, "build", str(recipe)], env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while _cached(db) < 3:
                assert proc.poll() is None, "the build ended before it could be killed"
                assert time.monotonic() < deadline, "no completions were cached within 5 minutes"
                time.sleep(0.05)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # never leave a build running behind a failed test
            proc.wait()
        before = _cached(db)
        assert 3 <= before < 24, "killed during generation"
        assert not (out / "killme" / "dataset").exists()

        done = subprocess.run([TINYFORGE, "build", str(recipe)], env=env, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    calls, hits = map(int, re.search(r"(\d+) model calls, (\d+) cache hits this run", done.stdout).groups())
    assert calls == 24 - before  # only the completions lost with the kill were generated again
    assert _cached(db) == 24
    ds = verify_dataset(out / "killme" / "dataset")
    assert "manifest:" in done.stdout and str(ds.path) in done.stdout
    generated = ds.manifest["stages"][0]
    assert generated["name"] == "generate" and generated["stats"]["in"] == 24
    assert json.loads((ds.path / "manifest.json").read_text())["build_id"] == load_recipe(recipe).build_id
    # every story once, none lost to the kill: the instant server's 24 stories are all distinct and all pass
    assert ds.manifest["splits"]["train"]["rows"] == 24


def test_a_second_build_publishes_nothing_already_published(prefect_server: str, instant_url: str,
                                                          tmp_path: Path) -> None:
    """A nightly-style second build of the same recipe, under its own name, asking for more stories."""
    from flows.build import flow_for

    tinystories_flow = flow_for("tinystories")
    recipe = instant_recipe(tmp_path / "r.toml", instant_url, name="tiny", out=tmp_path / "out", count=4)
    first = verify_dataset(tinystories_flow(recipe_path=str(recipe))["dataset"])
    first_ids = set(read_split(first.path, "train")["id"])
    assert len(first_ids) == 4
    recipe.write_text(recipe.read_text().replace("count = 4", "count = 8"))

    result = tinystories_flow(recipe_path=str(recipe), name="tiny-nightly")
    second = verify_dataset(result["dataset"])
    second_ids = set(read_split(second.path, "train")["id"])
    # stories 0-3 are the same prompts and seeds, so the same completions: all dropped as published;
    # stories 4-7 are new
    assert second.path != first.path and len(second_ids) == 4 and not (first_ids & second_ids)
    dropped = second.manifest["dropped_already_published"]
    assert dropped == {"total": 4, "by_build": {first.manifest["build_id"]: 4}}
    assert result["run_usage"]["cache_hits"] == 4 and result["run_usage"]["model_calls"] == 4  # not paid twice
    rejected = pl.read_parquet(second.path / "rejected.parquet").filter(pl.col("reason") == "already_published")
    assert set(rejected["id"]) == first_ids
    assert "already_published" in (second.path / "report.md").read_text()


def test_tinyforge_score_adds_difficulty_to_an_existing_build(prefect_server: str, instant_url: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from flows.build import flow_for
    from flows.cli import main

    tinystories_flow = flow_for("tinystories")
    # all train (the recipe's default): the S2L subset is drawn from train. The proxy model's scores are what
    # is added here; IFD (the embedded model's, tested with the golden builds) is left out.
    recipe = instant_recipe(tmp_path / "r.toml", instant_url, name="scored", out=tmp_path / "out", count=8,
                            difficulty="ifd = false")
    plain = verify_dataset(tinystories_flow(recipe_path=str(recipe))["dataset"])
    rows = read_split(plain.path, "train")
    assert rows["difficulty"].is_null().all() and "s2l" not in plain.manifest["splits"]

    build_dir = plain.path.parent
    assert main(["score", str(build_dir)]) == 0
    assert "0 model calls" in capsys.readouterr().out  # nothing regenerated
    scored = verify_dataset(build_dir / "dataset")
    rows = pl.concat([read_split(scored.path, s) for s in scored.splits])
    assert rows["difficulty"].is_not_null().all() and rows["loss_trajectory"].is_not_null().all()
    assert scored.manifest["splits"]["s2l"]["subset_of"] == "train"
    train = read_split(scored.path, "train")
    assert train.height == 8 and read_split(scored.path, "s2l")["id"].sort().to_list() == \
        train.filter(pl.col("s2l_selected"))["id"].sort().to_list()
    assert scored.manifest["splits"]["s2l"]["rows"] == 4  # the default budget: half the scored records
