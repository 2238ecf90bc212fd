"""Generation throughput of a whole build: the default runner vs Dask, same recipe, same process.

Builds one TinyStories recipe (generation only matters here: difficulty
scores are off) into fresh output roots, each with an empty response cache,
so every run calls the model for every story:

* baseline: the default runner (batches one at a time in the flow's process,
  the embedded engine using every core for a batch);
* ``dask:N``: a ``distributed.LocalCluster`` of N one-thread worker processes,
  each with its own engine, batches spread over them.

On a machine with few cores Dask cannot win: one engine already keeps every
core busy, and N engines split the same cores and each load the model. The
benchmark exists to show what scale-out costs where it cannot help, and to
measure the gain on machines (or clusters) where it can.

    PREFECT_SERVER_ANALYTICS_ENABLED=false .venv/bin/python benchmarks/runners.py [--stories 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

RECIPE = """
name = "bench-runners"
kind = "tinystories"
seed = 3
[generate]
count = {count}
batch_size = {batch}
[sampling]
max_tokens = 160
[difficulty]
enabled = false
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stories", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

    from flows.runners import task_runner
    from flows.temporary_server import start_temporary_server
    from flows.build import flow_for

    tinystories_flow = flow_for("tinystories")
    from pipeline.shards import verify_dataset

    start_temporary_server()  # one server for the flow and the Dask workers
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "r.toml"
        recipe.write_text(RECIPE.format(count=args.stories, batch=args.batch_size))
        for label, spec in (("default runner (baseline)", "local"), (f"dask:{args.workers}", f"dask:{args.workers}")):
            flow = tinystories_flow.with_options(task_runner=task_runner(spec))
            t0 = time.perf_counter()
            result = flow(recipe_path=str(recipe), output_root=str(Path(tmp) / spec.replace(":", "-")))
            seconds = time.perf_counter() - t0
            usage = result["run_usage"]
            assert usage["cache_hits"] == 0
            shards = [s["sha256"] for v in verify_dataset(result["dataset"]).manifest["splits"].values()
                      for s in v["shards"]]
            rows.append((label, seconds, usage["model_calls"], usage["completion_tokens"], shards))
    base = rows[0][1]
    print(f"\n{args.stories} stories, batches of {args.batch_size}, {os.cpu_count()} cores\n")
    print("| runner | build s | model calls | completion tokens | tok/s | speed vs baseline | same shards |")
    print("|---|---|---|---|---|---|---|")
    for label, seconds, calls, tokens, shards in rows:
        same = "yes" if shards == rows[0][4] else "NO"
        print(f"| {label} | {seconds:.1f} | {calls} | {tokens} | {tokens / seconds:.0f} | {base / seconds:.2f}x | {same} |")


if __name__ == "__main__":
    main()
