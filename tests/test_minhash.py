"""The C MinHash kernel against its plain-Python specification, and its statistics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipeline.minhash import EMPTY, MinHasher, reference_signature

TEXTS = [
    "The cat sat on the mat.",
    "THE CAT, sat on... the MAT!!",  # same words: same signature and key
    "Café au lait — naïve façade, 3 croissants & 2 crêpes.",
    "one two",  # shorter than the n-gram: one shingle
    "",
    "   ...   ",  # no words at all
    "Tom said, \"Don't run!\"\nThen he ran 10 km in 45 minutes.\tWow.",
    " ".join(f"w{i % 37}" for i in range(500)),
]


@pytest.mark.parametrize(("num_perm", "ngram", "seed"), [(128, 5, 1), (64, 3, 42), (16, 1, 7)])
def test_c_kernel_matches_the_python_specification(num_perm: int, ngram: int, seed: int) -> None:
    rng = random.Random(seed)
    texts = TEXTS + [" ".join(rng.choice(["a", "b", "Ünï", "x1", "Z"]) for _ in range(rng.randint(0, 40)))
                     for _ in range(50)]
    sig, keys = MinHasher(num_perm, ngram, seed, chunk=7, threads=2).signatures_and_keys(texts)
    for i, t in enumerate(texts):
        ref_sig, ref_key = reference_signature(t, num_perm, ngram, seed)
        assert sig[i].tolist() == ref_sig, t
        assert int(keys[i]) == ref_key, t


def test_case_punctuation_and_spacing_do_not_matter() -> None:
    sig, keys = MinHasher().signatures_and_keys(TEXTS[:2])
    assert (sig[0] == sig[1]).all() and keys[0] == keys[1]
    empty, _ = MinHasher().signatures_and_keys(["", "..."])
    assert (empty == EMPTY).all()


def test_estimates_are_unbiased_against_true_jaccard() -> None:
    rng = random.Random(0)
    errors = []
    for trial in range(60):
        base = [f"t{rng.randrange(3000)}" for _ in range(150)]
        other = list(base)
        for k in rng.sample(range(150), rng.randint(0, 25)):
            other[k] = f"new{trial}x{k}"  # one word under the tokeniser, too
        grams = lambda w: {" ".join(w[i : i + 5]) for i in range(len(w) - 4)}  # noqa: E731
        true = len(grams(base) & grams(other)) / len(grams(base) | grams(other))
        sig = MinHasher().signatures([" ".join(base), " ".join(other)])
        errors.append((sig[0] == sig[1]).mean() - true)
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.02  # no bias
    assert errors.std() < 0.06  # about what 128 classic permutations give (~0.04)
