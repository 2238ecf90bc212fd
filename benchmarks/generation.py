"""Output tokens/s on the CPU: one llama.cpp stream vs tinyforge's default engine, same model, same prompts.

Every row runs SmolLM2-135M-Instruct (the embedded model) on all cores with the
same sampling parameters over the same 64 samples. The baseline and the
default path alternate for ``--rounds`` rounds; ``--diagnostics`` adds the
two rows between them:

* baseline: llama-cpp-python's ``Llama.create_chat_completion``, one request
  after another (one stream, n_threads = cores), on the GGUF file as shipped
  (Q4_1). This is how one would run the model without tinyforge.
* the same single stream on the float16 re-encoding of the same weights, to
  show how much of the gain the weights format alone gives;
* tinyforge's engine on the file as shipped (``weights = "file"``);
* tinyforge's default CPU path (``backend.kind = "llamacpp"`` with every
  default: one engine per core, 16 slots each, float16 weights).

Workloads: ``stories`` (64 TinyStories prompts) or ``tinygsm`` (32 few-shot
problem rewrites sharing a long prefix, plus 8 solution prompts sampled 4
times each). With ``--openai`` it also starts llama-cpp-python's
OpenAI-compatible server on 127.0.0.1 and reports requests/s and p50/p95
latency of the ``openai`` backend against it.

    .venv/bin/python benchmarks/generation.py [--workload stories|tinygsm] [--max-tokens 128] [--rounds 3]
                                              [--diagnostics] [--openai]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.llm.llamacpp import LlamaCppStream, resolve_model_path  # noqa: E402
from pipeline.llm.llamacpp_engine import LlamaCppEngine  # noqa: E402
from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams  # noqa: E402
from pipeline.llm.weights import f16_copy  # noqa: E402
from pipeline.paths import SEEDS_FILE, VOCAB_DIR  # noqa: E402
from pipeline.tinygsm.recipe import SeedsConfig
from pipeline.tinystories.recipe import TinyStoriesGenerateConfig  # noqa: E402
from pipeline.solving import shipped_example, solution_prompt  # noqa: E402
from pipeline.tinygsm.prompts import question_messages  # noqa: E402
from pipeline.tinygsm.seeds import load_seeds  # noqa: E402
from pipeline.tinystories.prompts import plan_stories, story_prompt  # noqa: E402
from pipeline.tinystories.vocab import load_vocabulary  # noqa: E402

MODEL = "smollm2-135m-instruct"


def story_requests(max_tokens: int, n: int = 64) -> list[ChatRequest]:
    specs = plan_stories(0, n, 7, TinyStoriesGenerateConfig(count=n), load_vocabulary(VOCAB_DIR))
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=max_tokens, repeat_penalty=1.15)
    return [ChatRequest((Message("user", story_prompt(s)),), params, seed=s.seed) for s in specs]


def tinygsm_requests(max_tokens: int) -> list[ChatRequest]:
    seeds = load_seeds(SeedsConfig(path=SEEDS_FILE, limit=40))
    q_params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=max_tokens, repeat_penalty=1.1)
    s_params = SamplingParams(temperature=0.5, top_p=0.95, max_tokens=max_tokens, repeat_penalty=1.05)
    example = shipped_example()
    return ([ChatRequest(question_messages(s), q_params, seed=i) for i, s in enumerate(seeds[:32])]
            + [ChatRequest((Message("user", solution_prompt(s.question, example)),), s_params, seed=i, n=4)
               for i, s in enumerate(seeds[32:40])])


def timed(backend: Backend, requests: list[ChatRequest]) -> tuple[float, int, list[float]]:
    latencies: list[float] = []
    t0 = time.perf_counter()
    out = backend.generate(requests, on_done=lambda i, c: latencies.append(time.perf_counter() - t0))
    return time.perf_counter() - t0, sum(c.completion_tokens for cs in out for c in cs), latencies


def measure(make: Callable[[], Backend], requests: list[ChatRequest]) -> tuple[float, int]:
    backend = make()
    try:
        secs, toks, _ = timed(backend, requests)
    finally:
        if hasattr(backend, "close"):
            backend.close()
        del backend
        gc.collect()
    return secs, toks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["stories", "tinygsm"], default="stories")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=64, help="stories workload only")
    ap.add_argument("--rounds", type=int, default=3, help="baseline and default path, alternating")
    ap.add_argument("--diagnostics", action="store_true", help="also the two rows that split the gain")
    ap.add_argument("--openai", action="store_true")
    args = ap.parse_args()
    requests = (story_requests(args.max_tokens, args.prompts) if args.workload == "stories"
                else tinygsm_requests(args.max_tokens))
    cores = len(os.sched_getaffinity(0))
    samples = sum(r.n for r in requests)
    print(f"workload {args.workload}: {len(requests)} requests, {samples} samples, max_tokens {args.max_tokens}, "
          f"{cores} cores, SmolLM2-135M-Instruct, {args.rounds} rounds\n")

    f16 = str(f16_copy(resolve_model_path(MODEL)))
    baseline = ("llama.cpp single stream, Q4_1 file as shipped (baseline)",
                lambda: LlamaCppStream(MODEL, n_threads=cores))
    default = ("tinyforge default CPU path (engine per core, 16 slots, float16)",
               lambda: LlamaCppEngine(MODEL, n_threads=cores))
    # Alternating rounds: the machines are shared, and a slow minute should hit both sides alike.
    runs: dict[str, list[tuple[float, int]]] = {baseline[0]: [], default[0]: []}
    for _ in range(args.rounds):
        for name, make in (baseline, default):
            runs[name].append(measure(make, requests))
    if args.diagnostics:
        for name, make in [
            ("llama.cpp single stream, float16 copy of the same weights", lambda: LlamaCppStream(f16, n_threads=cores)),
            ("tinyforge engine, Q4_1 file as shipped (weights = \"file\")",
             lambda: LlamaCppEngine(MODEL, n_threads=cores, weights="file")),
        ]:
            runs[name] = [measure(make, requests)]

    rate = {name: [t / s for s, t in rs] for name, rs in runs.items()}
    base = statistics.median(rate[baseline[0]])
    print("| method | seconds (median) | output tokens | tokens/s, each round | median tokens/s | vs baseline |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        med = statistics.median(rate[name])
        print(f"| {name} | {statistics.median(s for s, _ in rs):.1f} | {rs[0][1]} | "
              f"{', '.join(f'{r:.1f}' for r in rate[name])} | {med:.1f} | {med / base:.2f}x |")
    ratios = [d / b for b, d in zip(rate[baseline[0]], rate[default[0]], strict=True)]
    print(f"\ndefault / baseline, round by round: {', '.join(f'{r:.2f}x' for r in ratios)}")

    if args.openai:
        from pipeline.llm.openai_backend import OpenAIBackend
        from pipeline.llm.config import OpenAIBackendConfig
        from tests.servers import llama_server  # the same server the tests start

        with llama_server() as url:
            cfg = OpenAIBackendConfig(base_url=url, model="smollm2", max_concurrency=4, timeout_s=120)
            backend = OpenAIBackend(cfg)
            secs, toks, lat = timed(backend, requests[:16])
            lat.sort()
            p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
            print(f"\nopenai backend -> llama_cpp.server on 127.0.0.1 (16 requests, concurrency 4): "
                  f"{16 / secs:.2f} requests/s, {toks / secs:.1f} tokens/s, "
                  f"p50 {p(0.5):.1f} s, p95 {p(0.95):.1f} s (completion times from the start)")


if __name__ == "__main__":
    main()
