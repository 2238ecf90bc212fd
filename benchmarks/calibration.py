"""Calibration of the embedded model's math solver at a few solution temperatures (docs/tinygsm.md).

The same pieces a TinyGSM build's calibrate stage runs (``pipeline.solving``: the solution prompt, k
samples, the sandbox, ``summarize``) on the first N shipped seeds, whose answers are known; prints
coverage, precision and pass@k per temperature and vote rule. Completions are cached in ``--cache``,
so a second run with the same arguments costs no model call.

    .venv/bin/python benchmarks/calibration.py 40 4 0.3,0.7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.llm import CachedBackend, ResponseCache, load_backend, sampling_params  # noqa: E402
from pipeline.llm.types import derive_seed  # noqa: E402
from pipeline.paths import SEEDS_FILE  # noqa: E402
from pipeline.llm.config import LlamaCppBackendConfig, SamplingConfig  # noqa: E402
from pipeline.sandbox import Sandbox  # noqa: E402
from pipeline.solving import Ask, Rule, Solver, shipped_example  # noqa: E402
from pipeline.solving.calibrate import load_gold, summarize, verifier_rows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problems", type=int, help="how many shipped seeds to solve")
    ap.add_argument("k", type=int, help="samples per problem")
    ap.add_argument("temperatures", help="comma-separated solution temperatures")
    ap.add_argument("--cache", default="build/bench-calibration.sqlite", help="response cache file")
    args = ap.parse_args()
    problems = load_gold(SEEDS_FILE, args.problems, exclude=[shipped_example().question])
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(Path(args.cache))
    backend = CachedBackend(load_backend(LlamaCppBackendConfig()), cache)
    print("| temperature | votes | agreement | coverage | precision | pass@k | solution tokens | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    with Sandbox(workers=2, timeout_s=2.0) as sandbox:
        for t in (float(x) for x in args.temperatures.split(",")):
            t0 = time.perf_counter()
            params = sampling_params(SamplingConfig(temperature=t, max_tokens=320, repeat_penalty=1.05))
            asks = [Ask(p.question, shipped_example(), derive_seed(3, "calibrate", p.id)) for p in problems]
            solved = Solver(backend, params, args.k, Rule(0.5), sandbox).solve(asks)
            seconds = time.perf_counter() - t0
            rows = [r for p, (s, v) in zip(problems, solved, strict=True)
                    for r in verifier_rows(p.id, p.question, s.solutions, v, "calibration", p.answer)]
            tokens = sum(s.completion_tokens for s, _ in solved)
            summary = summarize(rows, args.k, 0.5, distinct=True)
            for point in summary["curve"]:
                prec = "–" if point["precision"] is None else f"{point['precision']:.0%}"
                print(f"| {t} | {point['votes']} | ≥ {point['agreement']:.0%} | {point['coverage']:.1%} | {prec} "
                      f"| {summary['pass_at_k']:.1%} | {tokens:,} | {seconds:.0f} |")
    cache.close()


if __name__ == "__main__":
    main()
