"""What the pipeline itself costs per record: a TinyStories build against a server that answers at once.

The server (``tests/instant_server.py``) is a real OpenAI-compatible HTTP
server on 127.0.0.1, in its own process, that replies instantly with a
plausible story, so the model's time is out of the picture and every second,
CPU second and byte left is tinyforge's. Each build runs in a child process of
its own (peak memory is per process) with the ``openai`` backend, exemplars
and summaries as the shipped recipes ask, difficulty, fluency and the judge
off (they are model time, measured in benchmarks/difficulty.py), the
tokenizer on. It prints, per build size, wall time, pipeline CPU per record,
peak RSS and per record, and per stage its records/s, CPU per record and
peak RSS.

Baseline, in the same run against the same server: a bare aiohttp client
sending the same story requests (no cache, no records, no pipeline) at the
same concurrency, and the ``openai`` SDK's own client doing the same, so the
table shows what the pipeline adds to the cheapest possible client, and what
the SDK alone would cost.

    .venv/bin/python benchmarks/pipeline.py [--records 10000 100000 1000000] [--batch-size 10000 ...]
                                            [--concurrency 64] [--baseline-requests 20000] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def recipe_toml(records: int, batch_size: int, url: str, concurrency: int, output_root: Path) -> str:
    return f"""
name = "pipeline-bench-{records}"
kind = "tinystories"
seed = 1
output_root = "{output_root}"

[generate]
count = {records}
batch_size = {batch_size}
summary_fraction = 0.5

[backend]
kind = "openai"
base_url = "{url}"
model = "instant"
max_concurrency = {concurrency}

[sampling]
max_tokens = 300

[fluency]
enabled = false

[difficulty]
enabled = false

[publish]
tokenizer = "smollm2-135m-instruct"
"""


# --- peak memory, per stage -------------------------------------------------------


def rss_peak() -> int:
    """This process's peak resident memory since the last :func:`reset_peak`, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process, user + system
    return r.ru_utime + r.ru_stime


class MeasuringRunner:
    """The in-process runner, timing each step: wall, CPU and peak RSS per stage."""

    def __init__(self) -> None:
        from pipeline.kinds import InProcess

        self.inner = InProcess(echo=lambda m: None)
        self.steps: list[dict[str, Any]] = []

    def _measure(self, name: str, fn: Callable[[], T]) -> T:
        reset_peak()
        w, c, before = time.perf_counter(), cpu(), rss_now()
        out = fn()
        self.steps.append({"stage": name, "wall": time.perf_counter() - w, "cpu": cpu() - c, "before": before,
                           "peak": rss_peak()})
        return out

    def stage(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        return self._measure(name, lambda: self.inner.stage(name, fn, *args))

    def batches(self, stage: str, label: str, n: int, items: int, fn: Callable[[int], Any], run_name: str
                ) -> dict[str, int]:
        return self._measure(f"{stage} ({n} batches)", lambda: self.inner.batches(stage, label, n, items, fn, run_name))

    def log(self, message: str) -> None:
        pass


def child(records: int, batch_size: int, url: str, concurrency: int, root: Path) -> dict[str, Any]:
    """One build, in this (fresh) process; returns what it measured."""
    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe

    root.mkdir(parents=True, exist_ok=True)
    path = root / f"bench-{records}.toml"
    path.write_text(recipe_toml(records, batch_size, url, concurrency, root / f"out-{records}"))  # no cross-build dedup
    recipe = load_recipe(path)
    runner = MeasuringRunner()
    base = rss_peak()
    w, c = time.perf_counter(), cpu()
    outcome = run_build(recipe, runner)
    wall, spent = time.perf_counter() - w, cpu() - c
    rows = {s.name: s.rows["records"] for s in outcome.stages}
    return {"records": records, "wall": wall, "cpu": spent, "start_rss": base,
            "peak": max(s["peak"] for s in runner.steps), "steps": runner.steps, "rows": rows,
            "published": sum(sp["rows"] for sp in outcome.published.manifest["splits"].values()),
            "model_calls": outcome.usage["model_calls"]}


# --- baselines ---------------------------------------------------------------------


def story_bodies(n: int) -> list[bytes]:
    """The chat bodies a build of ``n`` stories sends for its stories (summaries aside)."""
    import orjson

    from pipeline.paths import VOCAB_DIR
    from pipeline.tinystories.recipe import TinyStoriesGenerateConfig
    from pipeline.tinystories.prompts import plan_stories, story_exemplars, story_messages
    from pipeline.paths import STORY_EXEMPLARS_FILE
    from pipeline.tinystories.vocab import load_vocabulary

    pool = story_exemplars(STORY_EXEMPLARS_FILE)
    specs = plan_stories(0, n, 1, TinyStoriesGenerateConfig(count=n), load_vocabulary(VOCAB_DIR))
    return [orjson.dumps({"model": "instant", "messages": [{"role": m.role, "content": m.content}
                                                            for m in story_messages(s, pool.draw(2, s.seed))],
                          "max_tokens": 300, "temperature": 0.8, "top_p": 0.95, "seed": s.seed}) for s in specs]


async def bare_aiohttp(url: str, bodies: list[bytes], concurrency: int) -> int:
    import aiohttp
    import orjson

    got = 0
    it = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            nonlocal got
            for body in it:
                async with session.post(f"{url}/chat/completions", data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    got += bool(orjson.loads(await resp.read())["choices"][0]["message"]["content"])
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got


async def bare_sdk(url: str, bodies: list[bytes], concurrency: int) -> int:
    import openai
    import orjson

    got = 0
    it = iter(bodies)
    async with openai.AsyncOpenAI(api_key="x", base_url=url, max_retries=0) as client:
        async def worker() -> None:
            nonlocal got
            for body in it:
                resp = await client.chat.completions.create(**orjson.loads(body))
                got += bool(resp.choices[0].message.content)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return got


def baseline(name: str, run: Callable[[], int], n: int) -> dict[str, Any]:
    w, c = time.perf_counter(), cpu()
    answered = run()
    wall, spent = time.perf_counter() - w, cpu() - c
    assert answered == n, f"{name}: {answered} of {n} answered"
    return {"name": name, "requests": n, "wall": wall, "cpu_ms": 1000 * spent / n, "rps": n / wall}


# --- the table ---------------------------------------------------------------------


def gb(b: float) -> str:
    return f"{b / 2**30:.2f} GB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[10_000],
                    help="one build per records x batch size")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--baseline-requests", type=int, default=20_000)
    ap.add_argument("--keep", action="store_true", help="keep the build folders (printed)")
    ap.add_argument("--child", nargs=4, metavar=("RECORDS", "BATCH", "URL", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        records, batch, url, root = args.child
        print(json.dumps(child(int(records), int(batch), url, args.concurrency, Path(root))))
        return

    from tests.instant_server import instant_server

    cores = len(os.sched_getaffinity(0))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    print(f"{model}; {cores} cores; concurrency {args.concurrency}\n")
    root = Path(tempfile.mkdtemp(prefix="tinyforge-pipeline-bench-"))
    with instant_server() as url:
        bodies = story_bodies(args.baseline_requests)
        bases = [baseline("bare aiohttp client (baseline)",
                          lambda: asyncio.run(bare_aiohttp(url, bodies, args.concurrency)), len(bodies)),
                 baseline("openai SDK client", lambda: asyncio.run(bare_sdk(url, bodies[:5000], args.concurrency)),
                          min(len(bodies), 5000))]
        runs = []
        for n in args.records:
            for batch in sorted({min(b, n) for b in args.batch_size}):
                proc = subprocess.run([sys.executable, __file__, "--concurrency", str(args.concurrency), "--child",
                                       str(n), str(batch), url, str(root / f"b{batch}")],
                                      capture_output=True, text=True, cwd=ROOT)
                if proc.returncode:
                    print(f"{n} records: the build failed:\n{proc.stderr[-3000:]}")
                    break
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]) | {"batch": batch})
                print(f"built {n:,} records in batches of {batch:,} in {runs[-1]['wall']:.0f} s", flush=True)

    base = bases[0]
    print("\n| client, alone | requests | wall | CPU per request | requests/s | CPU vs baseline |")
    print("|---|---|---|---|---|---|")
    for b in bases:
        print(f"| {b['name']} | {b['requests']:,} | {b['wall']:.1f} s | {b['cpu_ms']:.3f} ms | {b['rps']:,.0f} | "
              f"{b['cpu_ms'] / base['cpu_ms']:.1f}x |")
    print("\n| records | batch | published | requests | wall | pipeline CPU | CPU per record | records/s | peak RSS | "
          "RSS per record | CPU per request vs baseline |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        n = r["records"]
        per_req = 1000 * r["cpu"] / max(r["model_calls"], 1)
        print(f"| {n:,} | {r['batch']:,} | {r['published']:,} | {r['model_calls']:,} | {r['wall']:.0f} s | {r['cpu']:.0f} s | "
              f"{1000 * r['cpu'] / n:.2f} ms | {n / r['wall']:,.0f} | {gb(r['peak'])} | "
              f"{(r['peak'] - r['start_rss']) / n / 1024:.2f} KB | {per_req / base['cpu_ms']:.1f}x |")
    for r in runs:
        n = r["records"]
        print(f"\n{n:,} records in batches of {r['batch']:,}, by stage (peak RSS: the process's, during the stage; it started at "
              f"{gb(r['start_rss'])}):\n")
        print("| stage | wall | CPU per record | records/s | RSS before | peak RSS |")
        print("|---|---|---|---|---|---|")
        for s in r["steps"]:
            print(f"| {s['stage']} | {s['wall']:.1f} s | {1000 * s['cpu'] / n:.3f} ms | "
                  f"{n / s['wall'] if s['wall'] else 0:,.0f} | {gb(s['before'])} | {gb(s['peak'])} |")
    if args.keep:
        print(f"\nbuilds kept in {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
