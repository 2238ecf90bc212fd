"""Reading a published split for training: ShardDataset vs plain pyarrow, same shards, same run.

A synthetic TinyStories v2 dataset (default 50,000 records of about 120
words, shards of 5,000 rows, row groups of 1,024) is published with
``publish_dataset`` into a temporary folder. Every method reads the train
split's same columns (all but the ``sampling`` struct, ShardDataset's
default) and turns every row into a Python dict.

Baseline: ``pyarrow.parquet.read_table(shard).to_pylist()`` shard by shard in
manifest order: no shuffle, no checksum, no batching, one process.
Each method runs ``--repeat`` times; the tables show the median.

The second table is what DataLoader workers are for: the main process
sleeps ``--step-ms`` per batch, as it does while it waits on an
accelerator, and the table shows how long it also waited for data.

    .venv/bin/python benchmarks/loader.py [--records 50000] [--repeat 3] [--step-ms 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.loader import ShardDataset, ShardLoader  # noqa: E402
from pipeline.publish import publish_dataset  # noqa: E402
from pipeline.publish import PublishConfig  # noqa: E402
from pipeline.records import make_id, rejected_frame  # noqa: E402
from pipeline.schema import load_schema  # noqa: E402

BATCH = 64


def make_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vocab = np.array(["the", "a", "little", "dog", "girl", "ran", "saw", "happy", "ball", "tree", "sun", "mom",
                      "said", "and", "to", "play", "big", "red", "bird", "park", "friend", "sad", "jump", "cake"])
    records = []
    for i in range(n):
        words = rng.choice(vocab, size=int(rng.integers(60, 180)))
        story = f"Story {i}. " + " ".join(words) + "."
        rid = make_id(story)
        records.append({
            "id": rid, "build_id": "bench", "story": story, "summary": None, "words": ["ran", "ball", "red"],
            "features": ["Dialogue"] if i % 3 == 0 else [], "prompt": "Write a story.",
            "prompt_template_id": "tinystories.story@bench", "summary_template_id": None,
            "generator_model": "bench/none",
            "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 400, "repeat_penalty": 1.1, "stop": [],
                         "seed": i, "sample_index": 0},
            "parent_id": None, "verification": None, "dedup_cluster": rid, "num_words": len(words) + 2,
            "num_tokens": int(len(words) * 1.3), "finish_reason": "stop",
            "loss_trajectory": [3.1, 2.4, 2.0, 1.8], "learning_percentage": float(rng.random()),
            "difficulty": float(rng.random()), "s2l_cluster": i % 8, "s2l_selected": i % 2 == 0,
            "ifd": None, "ic_ifd": None,
        })
    return records


def publish(out: Path, n: int) -> Path:
    publish_dataset(make_records(n), rejected_frame([]), out_dir=out, schema=load_schema("tinystories.v2"),
                    cfg=PublishConfig(shard_max_rows=5_000, row_group_rows=1_024, validation_fraction=0.05),
                    seed=1, info={"build_id": "bench"}, card=lambda m: "", report=lambda m: "")
    return out


def baseline(out: Path, columns: list[str]) -> int:
    ds = ShardDataset(out, shuffle=False)  # only for the manifest's shard list
    n = 0
    for shard in ds.shards:
        n += len(pq.read_table(out / shard.path, columns=columns).to_pylist())
    return n


def dataset_run(out: Path, verify: bool) -> int:
    return sum(1 for _ in ShardDataset(out, seed=0, verify=verify))


def loader_run(out: Path, workers: int) -> int:
    loader = ShardLoader(ShardDataset(out, seed=0), batch_size=BATCH, num_workers=workers)
    return sum(len(batch["id"]) for batch in loader)


def stepped_run(out: Path, workers: int, step_s: float) -> tuple[int, float, float]:
    """(samples, seconds, seconds not spent in the simulated step: waiting for data)."""
    loader = ShardLoader(ShardDataset(out, seed=0), batch_size=BATCH, num_workers=workers)
    n, stepping = 0, 0.0
    t = time.perf_counter()
    for batch in loader:
        n += len(batch["id"])
        s = time.perf_counter()
        time.sleep(step_s)
        stepping += time.perf_counter() - s
    total = time.perf_counter() - t
    return n, total, total - stepping


def core_speeds() -> str:
    """Relative speed of each core this process may use: on a shared VM they can differ by 2x, which decides
    what DataLoader workers (run wherever the scheduler puts them) can gain."""
    allowed = sorted(os.sched_getaffinity(0))
    rates = {}
    try:
        for cpu in allowed:
            os.sched_setaffinity(0, {cpu})
            t = time.perf_counter()
            sum(i * i for i in range(2_000_000))
            rates[cpu] = 1 / (time.perf_counter() - t)
    finally:
        os.sched_setaffinity(0, allowed)
    top = max(rates.values())
    return ", ".join(f"cpu{c} {r / top:.2f}" for c, r in rates.items())


def timed(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    secs = []
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        secs.append(time.perf_counter() - t)
    return n, statistics.median(secs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--step-ms", type=float, default=2.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = publish(Path(tmp) / "dataset", args.records)
        made = time.perf_counter() - t
        probe = ShardDataset(out)
        mib = sum(s.bytes for s in probe.shards) / 2**20
        print(f"{probe.rows:,} train rows in {len(probe.shards)} shards ({mib:.1f} MiB zstd, published in "
              f"{made:.0f} s), {len(probe.columns)} columns, batch {BATCH}, {os.cpu_count()} cores, "
              f"median of {args.repeat}")
        print(f"relative core speed now: {core_speeds()}\n")
        methods: list[tuple[str, Callable[[], int]]] = [
            ("pyarrow read_table + to_pylist, manifest order (baseline)", lambda: baseline(out, probe.columns)),
            ("ShardDataset, shuffled, sha256 verified", lambda: dataset_run(out, True)),
            ("ShardDataset, shuffled, not verified", lambda: dataset_run(out, False)),
            ("ShardLoader + collate, num_workers=0", lambda: loader_run(out, 0)),
            ("ShardLoader + collate, num_workers=2", lambda: loader_run(out, 2)),
        ]
        print("| method | seconds | samples/s | vs baseline |")
        print("|---|---|---|---|")
        base = None
        for name, fn in methods:
            n, secs = timed(fn, args.repeat)
            assert n == probe.rows, (name, n)
            rate = n / secs
            base = base or rate
            print(f"| {name} | {secs:.2f} | {rate:,.0f} | {rate / base:.2f}x |")

        print(f"\nWith a simulated {args.step_ms:g} ms accelerator step per batch of {BATCH} (main process idle):\n")
        print("| loader | seconds | waiting for data | samples/s |")
        print("|---|---|---|---|")
        for workers in (0, 2):
            runs = [stepped_run(out, workers, args.step_ms / 1000) for _ in range(args.repeat)]
            n, secs, waiting = sorted(runs, key=lambda r: r[1])[len(runs) // 2]
            assert n == probe.rows
            print(f"| ShardLoader, num_workers={workers} | {secs:.2f} | {waiting:.2f} | {n / secs:,.0f} |")


if __name__ == "__main__":
    main()
