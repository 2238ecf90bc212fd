"""Solutions verified per second: the project's sandbox vs a fresh `python -I` per solution.

Both sides run the same 2,000 short TinyGSM-style solutions with the same
parallelism (one worker per core) and must return the same answers. The
baseline is what a pipeline without a sandbox server does: start a new
interpreter per solution (no namespaces, no rlimits, so it is the cheaper
kind of isolation). The two sides take turns, one round each at a time, so
a slow spell of a shared machine lands on both.

    .venv/bin/python benchmarks/sandbox.py [--n 2000] [--workers 2] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.sandbox import Sandbox  # noqa: E402


def solutions(n: int, seed: int = 0) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, c, d = rng.randint(2, 40), rng.randint(2, 40), rng.randint(1, 9), rng.randint(10, 500)
        code = (
            "def simple_math_problem() -> float:\n"
            f'    """Problem {i}: {a} boxes of {b} pencils, {c} pencils lost, pencils cost {d} cents."""\n'
            f"    boxes = {a}\n    per_box = {b}\n    lost = {c}\n    price_cents = {d}\n"
            "    pencils = boxes * per_box - lost\n"
            "    dollars = pencils * price_cents / 100\n"
            "    result = round(dollars, 2)\n"
            "    return result\n"
            "result = simple_math_problem()\n"
        )
        out.append((code, round((a * b - c) * d / 100, 2)))
    return out


def baseline(programs: list[str], workers: int, timeout_s: float) -> list[float | None]:
    def one(code: str) -> float | None:
        wrapped = code + "import json\nprint(json.dumps(result))\n"
        try:
            p = subprocess.run([sys.executable, "-I", "-c", wrapped], capture_output=True, text=True,
                               timeout=timeout_s)
            return json.loads(p.stdout) if p.returncode == 0 else None
        except subprocess.TimeoutExpired:
            return None

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, programs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=4,
                    help="split the solutions into this many rounds, each run by both sides in turn")
    args = ap.parse_args()
    work = solutions(args.n)
    programs, answers = [c for c, _ in work], [a for _, a in work]
    rounds = max(1, min(args.rounds, args.n))
    chunks = [range(args.n)[k::rounds] for k in range(rounds)]

    # The two sides alternate round by round, so a slow spell of a shared machine falls on both
    # rather than on whichever side happened to run during it.
    base: list[float | None] = [None] * args.n
    sand: list[float | None] = [None] * args.n
    base_s, sand_s, ratios = 0.0, 0.0, []
    t = time.perf_counter()
    with Sandbox(workers=args.workers, timeout_s=2.0, memory_mb=512) as sb:
        startup_s = time.perf_counter() - t
        for chunk in chunks:
            t = time.perf_counter()
            for i, v in zip(chunk, baseline([programs[i] for i in chunk], args.workers, 10.0)):
                base[i] = v
            b = time.perf_counter() - t
            t = time.perf_counter()
            for i, r in zip(chunk, sb.run_many([programs[i] for i in chunk])):
                sand[i] = r.value if r.ok else None
            s = time.perf_counter() - t
            base_s, sand_s = base_s + b, sand_s + s
            ratios.append(b / s)

    rows = [("fresh `python -I` per solution (baseline)", base_s, base),
            ("tinyforge Sandbox, full isolation (incl. start-up)", sand_s + startup_s, sand),
            ("tinyforge Sandbox, warm workers only", sand_s, sand)]
    base_rate = args.n / base_s
    print(f"{args.n} solutions in {rounds} alternating rounds, {args.workers} workers, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| method | seconds | solutions/s | vs baseline | correct |")
    print("|---|---|---|---|---|")
    for name, secs, values in rows:
        correct = sum(v is not None and abs(v - a) < 1e-9 for v, a in zip(values, answers, strict=True))
        rate = args.n / secs
        print(f"| {name} | {secs:.2f} | {rate:,.0f} | {rate / base_rate:.1f}x | {correct}/{args.n} |")
    print(f"\nstart-up {startup_s * 1000:.0f} ms; warm ratio per round: "
          + ", ".join(f"{r:.1f}x" for r in ratios))


if __name__ == "__main__":
    main()
