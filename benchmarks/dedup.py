"""Near-duplicate detection: tinyforge's bulk MinHash LSH vs datasketch, same documents, same run.

Documents are 200 words drawn from a 20,000-word Zipf vocabulary. A share
of them are planted edited copies of earlier documents, with a known, exactly
computed Jaccard similarity of their word 5-gram sets, spread from 0.5 to 1.
A pair is a true duplicate when that similarity is >= the threshold.

Baseline: datasketch's documented path: ``MinHash.update_batch`` per document
(SHA-1, 128 permutations), then ``MinHashLSH.query`` and ``insert``; a
document with any LSH candidate is a duplicate of its first candidate.

    .venv/bin/python benchmarks/dedup.py [--docs 20000] [--million]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from datasketch import MinHash, MinHashLSH  # noqa: E402

from pipeline.dedup import find_duplicate_report  # noqa: E402

THRESHOLD, NUM_PERM, NGRAM = 0.8, 128, 5


def make_corpus(n: int, words: int, planted_share: float, seed: int = 0) -> tuple[list[str], dict[tuple[int, int], float]]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    p = 1.0 / np.arange(1, 20_001) ** 1.1
    p /= p.sum()
    tokens = rng.choice(20_000, size=(n, words), p=p)
    planted: dict[tuple[int, int], float] = {}
    n_planted = int(n * planted_share)
    variants = rng.choice(np.arange(n // 4, n), size=n_planted, replace=False)
    for v in variants:
        base = int(rng.integers(0, v))
        edits = int(rng.integers(0, 12))  # 0..11 edited words: Jaccard ~1.0 down to ~0.5
        tokens[v] = tokens[base]
        where = rng.choice(words, size=edits, replace=False)
        tokens[v, where] = rng.integers(0, 20_000, size=edits) + 20_000  # words never seen elsewhere
        planted[(base, int(v))] = 0.0
    vocab = np.concatenate([vocab, np.array([f"x{i}" for i in range(20_000)])])
    texts = [" ".join(vocab[row]) for row in tokens]
    for (a, b) in planted:
        planted[(a, b)] = jaccard(texts[a], texts[b])
    return texts, planted


def shingles(text: str) -> set[str]:
    w = text.split()
    return {" ".join(w[i : i + NGRAM]) for i in range(len(w) - NGRAM + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def baseline(texts: list[str]) -> np.ndarray:
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    rep = np.arange(len(texts))
    for i, t in enumerate(texts):
        w = t.split()
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([" ".join(w[k : k + NGRAM]).encode() for k in range(len(w) - NGRAM + 1)])
        found = lsh.query(m)
        if found:
            rep[i] = rep[min(found)]
        else:
            lsh.insert(i, m)
    return rep


def quality(rep: np.ndarray, planted: dict[tuple[int, int], float]) -> tuple[float, float]:
    """Pair-level precision and recall against the planted pairs' true Jaccard.

    A dropped document is right when it shares its cluster with a true
    (>= threshold) planted partner; recall is the share of true pairs that
    ended in one cluster.
    """
    partners: dict[int, set[int]] = {}
    truth = [pair for pair, j in planted.items() if j >= THRESHOLD]
    for a, b in truth:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    flagged = np.flatnonzero(rep != np.arange(len(rep)))
    right = sum(any(rep[p] == rep[i] for p in partners.get(int(i), ())) for i in flagged)
    found = sum(rep[a] == rep[b] for a, b in truth)
    return (right / len(flagged) if len(flagged) else 1.0), (found / len(truth) if truth else 1.0)


def run(docs: int) -> None:
    texts, planted = make_corpus(docs, 200, 0.05)
    true_pairs = sum(j >= THRESHOLD for j in planted.values())
    print(f"{docs:,} documents of 200 words, {len(planted)} planted pairs ({true_pairs} with Jaccard >= "
          f"{THRESHOLD}), threshold {THRESHOLD}, {NUM_PERM} permutations, word {NGRAM}-grams\n")

    t = time.perf_counter()
    base_rep = baseline(texts)
    base_s = time.perf_counter() - t
    t = time.perf_counter()
    ours = find_duplicate_report(texts, THRESHOLD, NUM_PERM, NGRAM).representative
    ours_s = time.perf_counter() - t

    print("| method | seconds | documents/s | vs baseline | precision | recall |")
    print("|---|---|---|---|---|---|")
    for name, secs, rep in (("datasketch update_batch + MinHashLSH (baseline)", base_s, base_rep),
                            ("tinyforge find_duplicates", ours_s, ours)):
        p, r = quality(rep, planted)
        print(f"| {name} | {secs:.2f} | {docs / secs:,.0f} | {base_s / secs:.1f}x | {p:.3f} | {r:.3f} |")


def million() -> None:
    n = 1_000_000
    rng = np.random.default_rng(1)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    t = time.perf_counter()
    tokens = rng.integers(0, 20_000, size=(n, 40))
    texts = [" ".join(row) for row in vocab[tokens]]
    for i in range(0, n, 50):  # plant an exact and a near copy every 50 documents
        texts[i + 1] = texts[i]
        texts[i + 2] = texts[i].rsplit(" ", 1)[0] + " changed"
    made = time.perf_counter() - t
    t = time.perf_counter()
    report = find_duplicate_report(texts, THRESHOLD, NUM_PERM, NGRAM)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dropped = int((report.representative != np.arange(n)).sum())
    print(f"\n1,000,000 documents of 40 words (made in {made:.0f} s): dedup {secs:.1f} s "
          f"({n / secs:,.0f} documents/s), {dropped:,} dropped (40,000 planted), peak RSS {peak:,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--million", action="store_true", help="also dedup 1,000,000 short documents")
    args = ap.parse_args()
    run(args.docs)
    if args.million:
        million()


if __name__ == "__main__":
    main()
