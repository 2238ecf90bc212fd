"""Output tokens/s on the CPU: one llama.cpp stream vs tinyforge's batched engine, same 64 prompts.

Both sides run SmolLM2-135M-Instruct (the embedded model) with the same
sampling parameters on all cores. The baseline is llama-cpp-python's
``Llama.create_chat_completion``, one request after another (a single
stream, n_threads = cores). tinyforge's batched engine decodes up to ``--parallel``
samples in one llama.cpp context (continuous batching).

With ``--openai`` it also starts llama-cpp-python's OpenAI-compatible server
on 127.0.0.1 and reports requests/s and p50/p95 latency of the ``openai``
backend against it.

    .venv/bin/python benchmarks/generation.py [--prompts 64] [--max-tokens 128] [--parallel 8] [--openai]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.llm.llamacpp import LlamaCppBackend  # noqa: E402
from pipeline.llm.llamacpp_batched import BatchedLlamaCppBackend  # noqa: E402
from pipeline.llm.types import ChatRequest, Message, SamplingParams  # noqa: E402
from pipeline.paths import VOCAB_DIR  # noqa: E402
from pipeline.recipe import TinyStoriesGenerateConfig  # noqa: E402
from pipeline.tinystories.prompts import plan_stories, story_prompt  # noqa: E402
from pipeline.tinystories.vocab import load_vocabulary  # noqa: E402


def prompts(n: int, max_tokens: int) -> list[ChatRequest]:
    specs = plan_stories(0, n, 7, TinyStoriesGenerateConfig(count=n), load_vocabulary(VOCAB_DIR))
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=max_tokens, repeat_penalty=1.15)
    return [ChatRequest((Message("user", story_prompt(s)),), params, seed=s.seed) for s in specs]


def timed(backend, requests) -> tuple[float, int, list[float]]:
    latencies: list[float] = []
    t0 = time.perf_counter()
    out = backend.generate(requests, on_done=lambda i, c: latencies.append(time.perf_counter() - t0))
    return time.perf_counter() - t0, sum(c.completion_tokens for cs in out for c in cs), latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--openai", action="store_true")
    args = ap.parse_args()
    requests = prompts(args.prompts, args.max_tokens)
    cores = os.cpu_count()
    print(f"{args.prompts} TinyStories prompts, max_tokens {args.max_tokens}, {cores} cores, SmolLM2-135M Q4_1\n")

    rows = []
    single = LlamaCppBackend(n_threads=cores)
    secs, toks, _ = timed(single, requests)
    rows.append(("llama.cpp single stream, create_chat_completion (baseline)", secs, toks))
    del single
    batched = BatchedLlamaCppBackend(n_threads=cores, parallel=args.parallel)
    secs, toks, _ = timed(batched, requests)
    rows.append((f"tinyforge batched CPU engine ({args.parallel} slots, backend.parallel)", secs, toks))
    batched.close()

    base = rows[0][2] / rows[0][1]
    print("| method | seconds | output tokens | tokens/s | vs baseline |")
    print("|---|---|---|---|---|")
    for name, s, t in rows:
        print(f"| {name} | {s:.1f} | {t} | {t / s:.1f} | {t / s / base:.2f}x |")

    if args.openai:
        from tests.servers import llama_server  # the same server the tests start

        from pipeline.llm.openai_backend import OpenAIBackend
        from pipeline.recipe import OpenAIBackendConfig

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
