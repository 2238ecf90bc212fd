"""Operations on real parts: a served deployment, the Dask runner, two runs of one build, shared storage.

The Dask run builds with the embedded model, in the workers (that the model runs there is what it tests);
the others take their stories from the instant server (tests/instant_server.py), so their row counts are
exact on any CPU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.lock import is_locked
from pipeline.shards import verify_dataset
from tests.conftest import LOOSE_FILTER, TINYFORGE, instant_recipe, recipe_seed, write_recipe
from tests.replay import preload_stories

pytestmark = pytest.mark.slow

# The Dask run tests the runner, not the prose: no exemplar turns (shorter prompts), short stories, and no
# fluency or difficulty scoring keep it quick on 2 cores.
SMALL = """
    name = "{name}"
    kind = "tinystories"
    seed = {seed}
    output_root = "{out}"
    [generate]
    count = {count}
    batch_size = 2
    max_features = 1
    exemplars = 0
    [sampling]
    max_tokens = 80
    [difficulty]
    enabled = false
    [fluency]
    enabled = false
    [publish]
    validation_fraction = 0.25
    tokenizer = "smollm2-135m-instruct"
"""


# Story 1 is preloaded into each Dask-test build's response cache (tests/replay.py) with a story that
# passes the filters, so each publishes something whatever the model samples for the others.
PRELOADED = [1]


def small_recipe(path: Path, name: str, out: Path, count: int = 6) -> Path:
    return write_recipe(path, SMALL.format(name=name, out=out, count=count, seed=recipe_seed(7)) + LOOSE_FILTER)


def test_dask_runner_builds_the_same_records_as_the_default(prefect_server: str, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from flows.runners import task_runner
    from flows.build import flow_for

    tinystories_flow = flow_for("tinystories")

    recipe = small_recipe(tmp_path / "r.toml", "same", tmp_path / "unused", count=6)
    for root in ("local", "dask"):
        preload_stories(recipe, PRELOADED, output_root=tmp_path / root)
    local = tinystories_flow(recipe_path=str(recipe), output_root=str(tmp_path / "local"))
    # An existing cluster, as a team would point tinyforge at theirs: two worker processes.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        flow = tinystories_flow.with_options(task_runner=task_runner(cluster.scheduler_address))
        dask = flow(recipe_path=str(recipe), output_root=str(tmp_path / "dask"))  # its own response cache
        # the batches ran in the workers: each loaded the engine and generated
        loaded = client.run(lambda: "pipeline.llm.llamacpp_engine" in sys.modules)
    assert len(loaded) == 2 and all(loaded.values())
    assert local["run_usage"]["model_calls"] == dask["run_usage"]["model_calls"] >= 6 - len(PRELOADED)
    # generated afresh (but for the preloaded story), not read back from the local run
    assert dask["run_usage"]["cache_hits"] == local["run_usage"]["cache_hits"] == len(PRELOADED)

    def generated(root: str) -> pl.DataFrame:
        return pl.read_parquet(Path(root) / "same" / "stages" / "generate" / "records.parquet").sort("id")

    assert generated(str(tmp_path / "local")).equals(generated(str(tmp_path / "dask")))
    a, b = verify_dataset(local["dataset"]).manifest, verify_dataset(dask["dataset"]).manifest
    assert a["build_id"] == b["build_id"]
    shas = {k: [s["sha256"] for s in v["shards"]] for k, v in a["splits"].items()}
    assert shas == {k: [s["sha256"] for s in v["shards"]] for k, v in b["splits"].items()}  # byte-identical


def test_served_deployment_completes_a_build_triggered_through_the_api(prefect_server: str, instant_url: str,
                                                                       tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    out = tmp_path / "out"
    manual = instant_recipe(tmp_path / "manual.toml", instant_url, name="served", out=out, count=6)
    nightly = instant_recipe(tmp_path / "nightly.toml", instant_url, name="nightly", out=out, count=6,
                             extra='\n[schedule]\ncron = "0 3 * * *"\ntimezone = "Europe/Berlin"\n')
    log = (tmp_path / "serve.log").open("w")
    # the served process asks for scheduled runs every second, not Prefect's default 10
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    proc = subprocess.Popen([TINYFORGE, "serve", str(manual), str(nightly)], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    served = client.read_deployment_by_name("tinystories/served")
                    scheduled = client.read_deployment_by_name("tinystories/nightly")
                    break
                except Exception:  # not registered yet
                    assert time.monotonic() < deadline, "serve registered no deployment in 3 minutes"
                    time.sleep(1)
        assert served.parameters["recipe_path"] == str(manual.resolve()) and not served.schedules
        (schedule,) = scheduled.schedules
        assert schedule.schedule.cron == "0 3 * * *" and schedule.schedule.timezone == "Europe/Berlin"
        assert schedule.parameters == {"dated": True}

        run = run_deployment("tinystories/served", timeout=600, poll_interval=0.5, as_subflow=False)
        assert run.state.is_completed(), (tmp_path / "serve.log").read_text()[-3000:]
        ds = verify_dataset(out / "served" / "dataset")
        assert ds.manifest["build_id"].startswith("served-") and ds.manifest["stages"][0]["stats"]["in"] == 6
        assert ds.manifest["splits"]["train"]["rows"] == 6

        # a maintainer's parameters from the UI: the same recipe under another name, dated
        run = run_deployment("tinystories/served", parameters={"name": "served-copy", "dated": True},
                             timeout=600, poll_interval=0.5, as_subflow=False)
        assert run.state.is_completed()
        (dated,) = [p for p in out.iterdir() if p.name.startswith("served-copy-")]
        copy = verify_dataset(dated / "dataset").manifest
        assert copy["seed"] != ds.manifest["seed"] and copy["splits"]["train"]["rows"] == 6
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()


def test_a_second_run_of_the_same_build_fails_clearly(prefect_server: str, tmp_path: Path) -> None:
    from tests.instant_server import instant_server

    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    with instant_server(delay_ms=600_000) as url:  # no answer: the first build holds its lock until killed
        recipe = instant_recipe(tmp_path / "r.toml", url, name="busy", out=tmp_path / "out", count=8)
        first = subprocess.Popen([TINYFORGE, "build", str(recipe)], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _second_run_fails(first, recipe, env, tmp_path)


def _second_run_fails(first: subprocess.Popen, recipe: Path, env: dict[str, str], tmp_path: Path) -> None:
    try:
        deadline = time.monotonic() + 120
        while not is_locked(tmp_path / "out" / "busy"):
            assert first.poll() is None and time.monotonic() < deadline, "the first build never took the lock"
            time.sleep(0.2)
        second = subprocess.run([TINYFORGE, "build", str(recipe)], env=env, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"tinyforge: error: {tmp_path / 'out' / 'busy'} is being built by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_two_machines_share_the_cache_and_publish_to_a_shared_store(prefect_server: str, instant_url: str,
                                                                   tmp_path: Path) -> None:
    from flows.build import flow_for

    tinystories_flow = flow_for("tinystories")

    shared = tmp_path / "bucket"
    storage = f'\n[storage]\npublish_to = "{(shared / "datasets").as_uri()}"\ncache_url = "{(shared / "cache").as_uri()}"\n'
    recipe = instant_recipe(tmp_path / "r.toml", instant_url, name="shared", out=tmp_path / "unused", count=6,
                            publish='tokenizer = "smollm2-135m-instruct"', extra=storage)
    first = tinystories_flow(recipe_path=str(recipe), output_root=str(tmp_path / "machine-a"))
    assert first["run_usage"]["model_calls"] == 6
    # another machine: its own build folder and local cache, the same bucket
    second = tinystories_flow(recipe_path=str(recipe), output_root=str(tmp_path / "machine-b"))
    assert second["run_usage"]["model_calls"] == 0 and second["run_usage"]["cache_hits"] == 6

    copy = verify_dataset(shared / "datasets" / "shared")  # checksums of the uploaded copy
    assert copy.manifest["fingerprint"] == verify_dataset(second["dataset"]).manifest["fingerprint"]
    assert len(list((shared / "cache").glob("*.parquet"))) == 1  # machine b made nothing new to share

    # a trainer reads the uploaded copy by URL, two workers, pre-tokenized ids padded into tensors
    from pipeline.shards import ShardDataset, ShardLoader
    from pipeline.tokenize import load_tokenizer

    url = (shared / "datasets" / "shared").as_uri()
    loader = ShardLoader(ShardDataset(url, "train", seed=1), batch_size=2, num_workers=2)
    stories = {}
    for batch in loader:
        for k, story in enumerate(batch["story"]):
            n = int(batch["attention_mask"][k].sum())
            stories[story] = batch["input_ids"][k, :n].tolist()
    assert len(stories) == copy.manifest["splits"]["train"]["rows"] == 6
    tok = load_tokenizer("smollm2-135m-instruct")
    assert all(ids == tok.encode([story])[0] for story, ids in stories.items())
