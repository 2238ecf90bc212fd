"""find_duplicates on planted pairs above and below the threshold."""

from __future__ import annotations

import random

from pipeline.dedup import dedup_records, find_duplicate_report, find_duplicates
from pipeline.text import normalize


def _doc(rng: random.Random, n: int = 120) -> list[str]:
    vocab = [f"w{i}" for i in range(5000)]
    return [rng.choice(vocab) for _ in range(n)]


def _edit(tokens: list[str], share: float, rng: random.Random) -> list[str]:
    out = list(tokens)
    for i in rng.sample(range(len(out)), int(len(out) * share)):
        out[i] = f"x{rng.randrange(10**9)}"
    return out


def shingles(text: str, n: int = 5) -> set[str]:
    w = normalize(text).split()
    return {" ".join(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def _jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    return len(sa & sb) / len(sa | sb)


def test_planted_pairs_above_and_below_threshold() -> None:
    rng = random.Random(0)
    base = [_doc(rng) for _ in range(40)]
    texts = [" ".join(t) for t in base]
    near = [" ".join(_edit(t, 0.01, rng)) for t in base[:10]]  # one edit in 120 words: Jaccard ~0.9
    far = [" ".join(_edit(t, 0.15, rng)) for t in base[10:20]]  # 15% edited: Jaccard ~0.3
    exact = [texts[25].upper() + " !!"]  # differs only in case and punctuation
    corpus = texts + near + far + exact
    assert all(_jaccard(texts[i], near[i]) > 0.85 for i in range(10))
    assert all(_jaccard(texts[10 + i], far[i]) < 0.6 for i in range(10))

    rep = find_duplicates(corpus, threshold=0.8, num_perm=128, ngram=5)
    for i in range(10):
        assert rep[40 + i] == i  # near copy -> its original
        assert rep[50 + i] == 50 + i  # far copy is kept
    assert rep[60] == 25  # normalised exact duplicate
    assert [rep[i] for i in range(40)] == list(range(40))  # originals are all kept


def test_first_seen_is_kept_and_clusters_recorded() -> None:
    a = "the cat sat on the mat and looked at the moon for a long time"
    records = [{"id": "a", "story": a}, {"id": "b", "story": "a dog ran far away"}, {"id": "c", "story": a + "."}]
    kept, rejected = dedup_records(records, text_field="story", threshold=0.8, num_perm=128, ngram=3)
    assert [r["id"] for r in kept] == ["a", "b"]
    assert [r["dedup_cluster"] for r in kept] == ["a", "b"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "exact_duplicate"
    assert rejected[0]["detail"] == "duplicate of a"


def test_short_texts_and_empty_input() -> None:
    assert find_duplicates([]) == []
    assert find_duplicates(["hi there", "hi there", "bye now"], ngram=5) == [0, 0, 2]


def test_keep_policies() -> None:
    short = "the cat sat on the mat and looked at the moon for a long time"
    long = short + " and then it slept"
    texts = [short, long]
    assert find_duplicates(texts, threshold=0.5, ngram=2) == [0, 0]
    assert find_duplicates(texts, threshold=0.5, ngram=2, keep="longest") == [1, 1]
    assert find_duplicates(texts, threshold=0.5, ngram=2, keep="score", scores=[0.1, 0.9]) == [1, 1]


def test_signature_estimates_track_true_jaccard() -> None:
    rng = random.Random(3)
    base = _doc(rng, 300)
    errors = []
    for share in (0.0, 0.02, 0.05, 0.1, 0.2):
        other = _edit(base, share, rng)
        report = find_duplicate_report([" ".join(base), " ".join(other)], threshold=0.99)
        est = (report.signatures[0] == report.signatures[1]).mean()
        errors.append(abs(est - _jaccard(" ".join(base), " ".join(other))))
    assert max(errors) < 0.12, errors  # 128 bins: standard error ~0.04
