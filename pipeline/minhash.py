"""MinHash signatures for many documents at once.

The work is done by a small C extension (``pipeline/_minhash.c``) that
tokenises, shingles and hashes whole batches with the GIL released, on every
core. The method:

* **words**: maximal runs of ASCII letters and digits, or of non-ASCII
  characters, ASCII lower-cased, so case, punctuation and spacing never make
  two texts differ;
* **shingles**: every run of ``ngram`` consecutive words (a shorter document
  is one shingle of all its words);
* **one-permutation hashing** (Li, Owen & Zhang 2012): each shingle's mixed
  hash picks one of ``num_perm`` bins and competes for that bin's minimum,
  one hash per shingle instead of ``num_perm``;
* **rotation densification** (Shrivastava & Li 2014): an empty bin borrows
  the next filled bin's value, so two documents' signatures agree in a bin
  with probability equal to the Jaccard similarity of their shingle sets, as
  with classic MinHash.

:func:`reference_signature` is the same algorithm in plain Python, the
specification the C code is tested against bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline import _minhash

_M64 = (1 << 64) - 1
_PRIME = 0x100000001B3
_FNV_OFFSET = 0xCBF29CE484222325
_ROTATE = 0x9E3779B1
EMPTY = 0xFFFFFFFF


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _words(data: bytes) -> list[bytes]:
    out, cur = [], bytearray()
    for c in data:
        if c >= 0x80 or chr(c).isascii() and chr(c).isalnum():
            cur.append(c + 32 if 65 <= c <= 90 else c)
        elif cur:
            out.append(bytes(cur))
            cur = bytearray()
    if cur:
        out.append(bytes(cur))
    return out


def reference_signature(text: str, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> tuple[list[int], int]:
    """(signature, exact key) of one text: the specification of the C implementation."""
    hashes = []
    for word in _words(text.encode("utf-8")):
        h = _FNV_OFFSET
        for c in word:
            h = ((h ^ c) * _PRIME) & _M64
        hashes.append(_splitmix64(h ^ seed))
    if not hashes:
        return [EMPTY] * num_perm, _splitmix64(seed)

    def fold(hs: list[int]) -> int:
        acc = 0
        for h in hs:
            acc = (acc * _PRIME + h) & _M64
        return acc

    shingles = [fold(hashes[i : i + ngram]) for i in range(len(hashes) - ngram + 1)] or [fold(hashes)]
    seed_mix = _splitmix64(seed ^ 0x2545F4914F6CDD1D)
    sig: dict[int, int] = {}
    for s in shingles:
        x = _splitmix64(s ^ seed_mix)
        b, v = (x >> 32) % num_perm, x & 0xFFFFFFFF
        sig[b] = min(v, sig.get(b, v))
    out = []
    for b in range(num_perm):
        hops = 0
        while (b + hops) % num_perm not in sig:
            hops += 1
        out.append((sig[(b + hops) % num_perm] + hops * _ROTATE) & 0xFFFFFFFF)
    return out, _splitmix64(fold(hashes) ^ ((len(hashes) * _PRIME) & _M64))


@dataclass(frozen=True)
class MinHasher:
    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    chunk: int = 4096  # documents per C call; chunks run on all cores
    threads: int = max(1, os.cpu_count() or 1)

    def signatures_and_keys(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(``(n, num_perm)`` uint32 signatures, ``(n,)`` uint64 exact-duplicate keys)."""
        n = len(texts)
        sig = np.empty((n, self.num_perm), dtype=np.uint32)
        keys = np.empty(n, dtype=np.uint64)
        if n == 0:
            return sig, keys

        def run(start: int) -> None:
            # a slice at a time: texts may be a lazy column (pipeline.records.ColumnView) of a million
            part = texts[start : start + self.chunk]
            part = part if isinstance(part, list) else list(part)
            s, k = _minhash.signatures(part, self.num_perm, self.ngram, self.seed)
            sig[start : start + len(part)] = np.frombuffer(s, dtype=np.uint32).reshape(len(part), self.num_perm)
            keys[start : start + len(part)] = np.frombuffer(k, dtype=np.uint64)

        starts = range(0, n, self.chunk)
        if self.threads == 1 or len(starts) == 1:
            for st in starts:
                run(st)
        else:
            with ThreadPoolExecutor(self.threads) as pool:
                list(pool.map(run, starts))
        return sig, keys

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        return self.signatures_and_keys(texts)[0]


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature entries (a and b: same shape, or one row against many)."""
    return (a == b).mean(axis=-1)
