"""Structured output on the embedded model: TinyGSM problem rewrites as plain text vs as grammar-constrained JSON.

The same seeds, the same sampling, the same engine; the only difference is
the recipe's ``backend.structured_output``. The plain run (baseline, same
process) uses the plain-text prompt; the structured run asks for
``{"question": ...}`` and enforces the schema with a llama.cpp grammar. Both
answers go through the same parser and the same question checks the TinyGSM
flow applies, so the table shows what structured output buys a 135M model
(problems that pass) and what it costs (tokens/s).

    .venv/bin/python benchmarks/structured.py [--problems 96]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.llm.llamacpp_engine import LlamaCppEngine  # noqa: E402
from pipeline.llm.types import ChatRequest, SamplingParams  # noqa: E402
from pipeline.paths import SEEDS_FILE  # noqa: E402
from pipeline.solving.config import QuestionFilterConfig
from pipeline.tinygsm.recipe import SeedsConfig  # noqa: E402
from pipeline.tinygsm.extract import extract_question  # noqa: E402
from pipeline.solving import check_question  # noqa: E402
from pipeline.tinygsm.prompts import QUESTION_SCHEMA, plan_problem, question_messages  # noqa: E402
from pipeline.tinygsm.seeds import load_seeds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=96)
    args = ap.parse_args()
    seeds = load_seeds(SeedsConfig(path=SEEDS_FILE))
    specs = [plan_problem(i, 3, seeds) for i in range(args.problems)]
    params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=160, repeat_penalty=1.1)  # the demo's
    checks = QuestionFilterConfig()
    print(f"{args.problems} TinyGSM problem rewrites from the shipped seeds, SmolLM2-135M-Instruct, "
          f"{os.cpu_count()} cores\n")
    print("| run | seconds | output tokens | tokens/s | vs baseline | problems passing the checks | top rejections |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for structured in (False, True):
        engine = LlamaCppEngine(structured_output=structured)
        requests = [ChatRequest(question_messages(s.seed, structured), params, seed=s.question_seed,
                                json_schema=QUESTION_SCHEMA if structured else None) for s in specs]
        t0 = time.perf_counter()
        out = engine.generate(requests)
        secs = time.perf_counter() - t0
        engine.close()
        tokens = sum(c[0].completion_tokens for c in out)
        verdicts = [check_question(extract_question(c[0].text), s.seed.question, checks) for s, c in zip(specs, out)]
        passed = sum(v is None for v in verdicts)
        reasons = Counter(v[0] for v in verdicts if v is not None).most_common(3)
        rate = tokens / secs
        base = base or rate
        name = ("JSON prompt + grammar (structured_output = true)" if structured
                else "plain prompt, text parser (baseline)")
        print(f"| {name} | {secs:.1f} | {tokens} | {rate:.1f} | {rate / base:.2f}x | "
              f"{passed}/{len(specs)} | {', '.join(f'{r} {n}' for r, n in reasons)} |")


if __name__ == "__main__":
    main()
