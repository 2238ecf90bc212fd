"""Solutions verified per second: the project's sandbox vs a fresh `python -I` per solution.

Both sides run the same 2,000 short TinyGSM-style solutions with the same
parallelism (one worker per core) and must return the same answers. The
baseline is what a pipeline without a sandbox server does: start a new
interpreter per solution (no namespaces, no rlimits, so it is the cheaper
kind of isolation).

    .venv/bin/python benchmarks/sandbox.py [--n 2000] [--workers 2]
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
    args = ap.parse_args()
    work = solutions(args.n)
    programs, answers = [c for c, _ in work], [a for _, a in work]

    rows = []
    t = time.perf_counter()
    base = baseline(programs, args.workers, 10.0)
    rows.append(("fresh `python -I` per solution (baseline)", time.perf_counter() - t, base))

    t = time.perf_counter()
    with Sandbox(workers=args.workers, timeout_s=2.0, memory_mb=512) as sb:
        started = time.perf_counter()
        res = sb.run_many(programs)
    rows.append(("tinyforge Sandbox, full isolation (incl. start-up)", time.perf_counter() - t,
                 [r.value if r.ok else None for r in res]))
    rows.append(("tinyforge Sandbox, warm workers only", time.perf_counter() - started, rows[-1][2]))

    base_rate = args.n / rows[0][1]
    print(f"{args.n} solutions, {args.workers} workers, Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| method | seconds | solutions/s | vs baseline | correct |")
    print("|---|---|---|---|---|")
    for name, secs, values in rows:
        correct = sum(v is not None and abs(v - a) < 1e-9 for v, a in zip(values, answers, strict=True))
        rate = args.n / secs
        print(f"| {name} | {secs:.2f} | {rate:,.0f} | {rate / base_rate:.1f}x | {correct}/{args.n} |")


if __name__ == "__main__":
    main()
