"""Proxy-model difficulty at a larger size: quality on a planted corpus, and throughput.

Trains the default-size proxy (4 layers, d=128) on a planted corpus of easy
(templated) and hard (shuffled or random) records, then reports:

* quality: AUROC of learning percentage for "hard" (goal >= 0.9) and S2L
  cluster purity;
* throughput of proxy training and of trajectory scoring, in records/s and
  tokens/s; scoring is batched, and the baseline (same run, same model) scores
  one record at a time.

    .venv/bin/python benchmarks/difficulty.py [--per-class 400]

With ``--records N ...`` it instead measures what scoring costs a build of N
story-sized records (prompts from the story planner, stories as the pipeline
benchmark's server writes them, about 90 words): proxy training and
trajectory scoring seconds, per record built and per record scored, with the
default proxy; ``--sample S`` scores S of them (``[difficulty] sample``).

    .venv/bin/python benchmarks/difficulty.py --records 2000 10000 100000 --sample 10000 [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pipeline.difficulty.learning_percentage import auroc, learning_percentage  # noqa: E402
from pipeline.difficulty.planted import planted_corpus  # noqa: E402
from pipeline.difficulty.proxy import TinyLM, _encode, _record_losses, loss_trajectories, train_tokenizer  # noqa: E402
from pipeline.difficulty.s2l import kmeans, purity  # noqa: E402
from pipeline.difficulty.config import DifficultyConfig  # noqa: E402


def story_pairs(n: int) -> list[tuple[str, str]]:
    from pipeline.paths import VOCAB_DIR
    from pipeline.tinystories.recipe import TinyStoriesGenerateConfig
    from pipeline.tinystories.prompts import plan_stories, story_prompt
    from pipeline.tinystories.vocab import load_vocabulary
    from tests.instant_server import Storyteller

    teller = Storyteller()
    specs = plan_stories(0, n, 1, TinyStoriesGenerateConfig(count=n), load_vocabulary(VOCAB_DIR))
    return [(prompt := story_prompt(s), teller.reply(prompt, s.seed)) for s in specs]


def scale(sizes: list[int], sample: int | None) -> None:
    from pipeline.difficulty.score import score_pairs

    print(f"story-sized records, default proxy, ifd off, device {'cuda' if torch.cuda.is_available() else 'cpu'}, "
          f"{torch.get_num_threads()} CPU threads, sample {sample}\n")
    print("| records | scored | proxy training | trajectory scoring | total | per record built | per record scored |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        cfg = DifficultyConfig(ifd=False, sample=sample if sample and n > sample else None)
        result = score_pairs(story_pairs(n), cfg, seed=1)
        s = result.summary["proxy"]
        train = s["trained_tokens"] / s["train_tokens_per_s"]
        score = s["scored_tokens"] / s["score_tokens_per_s"]
        k = result.summary["scored"]
        print(f"| {n:,} | {k:,} | {train:.0f} s | {score:.0f} s | {s['seconds']:.0f} s | "
              f"{1000 * s['seconds'] / n:.1f} ms | {1000 * s['seconds'] / k:.1f} ms |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--records", type=int, nargs="+", help="measure cost at these build sizes instead")
    ap.add_argument("--sample", type=int, default=None, help="with --records: [difficulty] sample")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, the cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.records:
        scale(args.records, args.sample)
        return
    pairs, hard = planted_corpus(args.per_class, args.per_class, seed=1)
    hard = np.array(hard)
    cfg = DifficultyConfig(ifd=False, seq_len=128)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{len(pairs)} records ({args.per_class} easy, {args.per_class} hard), device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")

    traj = loss_trajectories(pairs, cfg, seed=1)
    s = traj.stats
    lp = learning_percentage(traj.losses, traj.epoch_columns)
    labels = kmeans(traj.losses, cfg.s2l_clusters, seed=1)

    # Baseline: the same scoring pass, one record per forward call.
    tok = train_tokenizer([q + "\n" + a for q, a in pairs], cfg.vocab_size)
    ids, mask = _encode(tok, pairs, cfg.seq_len)
    model = TinyLM(tok.get_vocab_size(), cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.seq_len).to(device)
    sample = min(len(pairs), 200)
    t = time.perf_counter()
    _record_losses(model, ids[:sample], mask[:sample], 1, device, tok.token_to_id("<pad>"))
    one_s = time.perf_counter() - t
    t = time.perf_counter()
    _record_losses(model, ids[:sample], mask[:sample], cfg.batch_size * 4, device, tok.token_to_id("<pad>"))
    batched_s = time.perf_counter() - t
    tokens = int((ids[:sample] != tok.token_to_id("<pad>")).sum())

    print(f"proxy: {s['parameters']:,} parameters, vocab {s['vocab']}, {s['epochs']} epochs, "
          f"{s['checkpoints']} checkpoints, {s['seconds']} s in all")
    print(f"quality: AUROC(low LP = hard) {auroc(-lp, hard):.3f}, S2L purity ({cfg.s2l_clusters} clusters) "
          f"{purity(labels, hard.astype(int)):.3f}\n")
    print("| step | records/s | tokens/s | vs baseline |")
    print("|---|---|---|---|")
    train_records = len(pairs) * cfg.epochs / (s["trained_tokens"] / s["train_tokens_per_s"])
    print(f"| proxy training | {train_records:,.0f} | {s['train_tokens_per_s']:,.0f} | |")
    print(f"| trajectory scoring, one record per call (baseline) | {sample / one_s:,.0f} | {tokens / one_s:,.0f} | 1.0x |")
    print(f"| trajectory scoring, batched ({cfg.batch_size * 4}) | {sample / batched_s:,.0f} | "
          f"{tokens / batched_s:,.0f} | {one_s / batched_s:.1f}x |")


if __name__ == "__main__":
    main()
