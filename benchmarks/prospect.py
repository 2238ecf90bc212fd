"""What one-shot prospecting costs per record, with the embedded model on this CPU.

Scores ``--records`` story-sized records (the story planner's prompts, the instant server's stories: the
example is about 150 tokens) and as many short ones (a seed instruction and a one-line answer) against the
shipped task set (12 tasks). Baseline, in the same process on the same records: every task evaluated as one
whole sequence (example + task), without the example's evaluation being shared across the tasks.

    .venv/bin/python benchmarks/prospect.py [--records 8] [--tasks 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.difficulty.ifd import LlamaScorer  # noqa: E402
from pipeline.difficulty.prospect import Task, load_tasks, prospect_scores, shot  # noqa: E402
from pipeline.paths import INSTRUCTIONS_FILE, PROSPECT_TASKS_FILE  # noqa: E402


def whole_pass_losses(scorer: LlamaScorer, tasks: list[Task], example: tuple[str, str] | None) -> np.ndarray:
    """The baseline: each task as one sequence, the example evaluated again for every task."""
    prefix = scorer.start() + (scorer.tokens(shot(*example), bos=False) if example else [])
    out = []
    for t in tasks:
        ask, answer = scorer.tokens(shot(t.instruction), bos=False), scorer.tokens(t.response, bos=False)
        losses = scorer.losses(prefix + ask + answer)
        out.append(losses[len(prefix) + len(ask) - 1 :].mean())
    return np.array(out)


def main() -> None:
    import json

    from benchmarks.difficulty import story_pairs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=8)
    ap.add_argument("--tasks", type=int, default=12)
    args = ap.parse_args()
    tasks = load_tasks(PROSPECT_TASKS_FILE)[: args.tasks]
    seeds = [json.loads(line)["instruction"] for line in INSTRUCTIONS_FILE.read_text().splitlines()[: args.records]]
    workloads = {"stories (~150-token example)": story_pairs(args.records),
                 "short (an instruction, a one-line answer)": [(q, "Sure: here is a short answer.") for q in seeds]}
    scorer = LlamaScorer()
    scorer.losses(scorer.start() + scorer.tokens("Warm up.", bos=False))
    print(f"{len(tasks)} tasks, {args.records} records per workload, model smollm2-135m-instruct (llama.cpp, "
          f"{os.cpu_count()} CPUs)\n")
    print("| workload | prefix shared (tinyforge) | whole passes (baseline) | speed-up |")
    print("|---|---|---|---|")
    for name, pairs in workloads.items():
        t = time.perf_counter()
        fast = prospect_scores(pairs, tasks, scorer)
        shared = (time.perf_counter() - t) / len(pairs)
        t = time.perf_counter()
        zero = whole_pass_losses(scorer, tasks, None)
        slow = np.array([(zero - whole_pass_losses(scorer, tasks, p)).mean() for p in pairs])
        whole = (time.perf_counter() - t) / len(pairs)
        assert np.allclose(slow, fast.gain, atol=1e-3), "the two ways must give the same gains"
        print(f"| {name} | {shared:.2f} s/record | {whole:.2f} s/record | {whole / shared:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
