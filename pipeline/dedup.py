"""Duplicate removal: exact (normalised-text hash), then near-duplicate (MinHash LSH).

``find_duplicates`` maps every text to the representative of its cluster;
the first text seen in a cluster is kept. Candidate pairs from LSH banding
are confirmed with the MinHash Jaccard estimate before they are merged, so
banding's false positives do not chain unrelated texts together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datasketch import MinHash, MinHashLSH

from pipeline.records import rejection
from pipeline.text import normalize


def shingles(text: str, ngram: int) -> set[bytes]:
    """Word n-grams of the normalised text; a text shorter than n is one shingle."""
    tokens = normalize(text).split()
    if len(tokens) <= ngram:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + ngram]).encode() for i in range(len(tokens) - ngram + 1)}


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller index wins: first seen is kept
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class DuplicateReport:
    representative: list[int]  # representative[i] == i for kept texts
    exact: list[bool]  # True where i duplicates its representative exactly

    @property
    def kept(self) -> list[int]:
        return [i for i, r in enumerate(self.representative) if r == i]


def find_duplicate_report(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> DuplicateReport:
    n = len(texts)
    uf = _UnionFind(n)
    exact = [False] * n

    first_by_hash: dict[bytes, int] = {}
    for i, text in enumerate(texts):
        h = hashlib.sha256(normalize(text).encode()).digest()
        j = first_by_hash.setdefault(h, i)
        if j != i:
            uf.union(j, i)
            exact[i] = True

    uniques = [i for i in range(n) if not exact[i]]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches: dict[int, MinHash] = {}
    for i in uniques:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(shingles(texts[i], ngram)))
        for j in lsh.query(m):
            if sketches[j].jaccard(m) >= threshold:
                uf.union(j, i)
        lsh.insert(i, m)
        sketches[i] = m

    return DuplicateReport([uf.find(i) for i in range(n)], exact)


def find_duplicates(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5
) -> list[int]:
    """``rep[i] == i`` for the kept representative of each cluster, else the index it duplicates."""
    return find_duplicate_report(texts, threshold, num_perm, ngram).representative


def dedup_records(
    records: list[dict[str, Any]], *, text_field: str, threshold: float, num_perm: int, ngram: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep one record per cluster; every record gets ``dedup_cluster`` (its representative's id)."""
    report = find_duplicate_report([r[text_field] for r in records], threshold, num_perm, ngram)
    kept, rejected = [], []
    for i, record in enumerate(records):
        rep = report.representative[i]
        record = {**record, "dedup_cluster": records[rep]["id"]}
        if rep == i:
            kept.append(record)
        else:
            reason = "exact_duplicate" if report.exact[i] else "near_duplicate"
            rejected.append(rejection(record, "dedup", reason, f"duplicate of {records[rep]['id']}", text_field))
    return kept, rejected
