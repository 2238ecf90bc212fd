"""Duplicate removal: exact (normalised-text hash), then near-duplicate (MinHash LSH).

    from pipeline.dedup import find_duplicates
    rep = find_duplicates(texts, threshold=0.8, num_perm=128, ngram=5)
    # rep[i] == i for the kept representative of each cluster,
    # otherwise the index of the representative it duplicates

Exact duplicates are found first and skip hashing. Signatures come from
:class:`~pipeline.minhash.MinHasher` in bulk; LSH banding uses the bands and
rows datasketch's ``MinHashLSH`` picks for the threshold; every candidate pair
is confirmed with the signature Jaccard estimate before it joins a cluster
(connected components). The keep policy picks each cluster's representative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from pipeline.config import Section
from pipeline.minhash import MinHasher, estimate_jaccard
from pipeline.records import rejection


class DedupConfig(Section):
    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity of word n-gram sets")
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=32, description="words per shingle")
    keep: Literal["first", "longest", "score"] = Field(
        "first", description="which record of a cluster is kept: first seen, longest, or highest score "
        "(tinygsm: answer agreement)")
    cross_build: bool = Field(True, description="drop records that other builds under output_root published")

KeepPolicy = Literal["first", "longest", "score"]


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band), exactly as datasketch.MinHashLSH chooses them (equal FP/FN weights)."""
    from datasketch.lsh import _optimal_param  # datasketch imports scipy (0.5 s): only dedup needs it

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per (document, band) of that band's signature rows."""
    h = np.zeros((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            h = h * np.uint64(0x100000001B3) + sig[:, r : bands * rows : rows].astype(np.uint64)
            h ^= h >> np.uint64(29)
    return h


def candidate_pairs(bh: np.ndarray) -> np.ndarray:
    """Pairs (i, j), i < j, that share a band hash: each document is paired with its bucket's first."""
    pairs = []
    idx = np.arange(bh.shape[0])
    for b in range(bh.shape[1]):
        order = np.lexsort((idx, bh[:, b]))
        h = bh[order, b]
        new = np.ones(len(h), dtype=bool)
        new[1:] = h[1:] != h[:-1]
        first = order[np.maximum.accumulate(np.where(new, np.arange(len(h)), 0))]
        keep = ~new
        pairs.append(np.stack([first[keep], order[keep]], axis=1))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    allp = np.concatenate(pairs)
    return np.unique(allp, axis=0) if len(allp) else allp


@dataclass(frozen=True)
class DuplicateReport:
    representative: np.ndarray  # representative[i] == i for kept texts
    exact: np.ndarray  # True where i duplicates its representative exactly
    similarity: np.ndarray  # estimated Jaccard with the representative (1.0 for kept and exact)
    signatures: np.ndarray  # (n, num_perm) uint32, reusable for cross-build checks

    @property
    def kept(self) -> np.ndarray:
        return np.flatnonzero(self.representative == np.arange(len(self.representative)))


def _choose(labels: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Per component label, the member with the largest key (ties: the smallest index)."""
    n = len(labels)
    order = np.lexsort((np.arange(n), -key, labels))  # by label, then key descending, then index
    best = np.empty(labels.max() + 1 if n else 0, dtype=np.int64)
    first_of_label = np.ones(n, dtype=bool)
    first_of_label[1:] = labels[order][1:] != labels[order][:-1]
    best[labels[order][first_of_label]] = order[first_of_label]
    return best


def find_duplicate_report(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, *,
    keep: KeepPolicy = "first", scores: Sequence[float] | None = None, seed: int = 1,
) -> DuplicateReport:
    n = len(texts)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return DuplicateReport(empty, empty.astype(bool), empty.astype(float), np.empty((0, num_perm), np.uint32))

    # Exact duplicates (same words, ignoring case, punctuation and spacing) share a
    # key and a signature; clustering works on one text per key.
    sig_all, keys = MinHasher(num_perm=num_perm, ngram=ngram, seed=seed).signatures_and_keys(texts)
    _, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    uniq = np.sort(first_idx)  # one text per exact group, in input order
    sig_u = sig_all if len(uniq) == n else sig_all[uniq]  # (a copy only when there are exact duplicates)

    bands, rows = lsh_bands(threshold, num_perm)
    pairs = candidate_pairs(band_hashes(sig_u, bands, rows))
    if len(pairs):
        sim = estimate_jaccard(sig_u[pairs[:, 0]], sig_u[pairs[:, 1]])
        pairs = pairs[sim >= threshold]
    m = len(uniq)
    from scipy.sparse import coo_matrix  # (what a recipe check, which imports this module, never needs)
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    _, labels_u = connected_components(graph, directed=False)

    # Every text joins the component of its exact group's first text.
    pos_of_first = np.empty(n, dtype=np.int64)
    pos_of_first[uniq] = np.arange(m)
    first_of_text = first_idx[inverse]
    labels = labels_u[pos_of_first[first_of_text]]

    if keep == "first":
        key = np.zeros(n)
    elif keep == "longest":
        key = np.fromiter((len(t) for t in texts), dtype=float, count=n)
    elif keep == "score":
        if scores is None:
            raise ValueError("keep='score' needs scores")
        key = np.asarray(scores, dtype=float)
    else:
        raise ValueError(f"unknown keep policy {keep!r}")
    rep = _choose(labels, key)[labels]

    signatures = sig_all
    exact = (rep != np.arange(n)) & (keys == keys[rep])
    similarity = np.ones(n)
    dup = np.flatnonzero(rep != np.arange(n))  # only these are compared: no second copy of every signature
    similarity[dup] = estimate_jaccard(signatures[dup], signatures[rep[dup]])
    return DuplicateReport(rep, exact, similarity, signatures)


def find_duplicates(texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5,
                    *, keep: KeepPolicy = "first", scores: Sequence[float] | None = None) -> list[int]:
    """``rep[i] == i`` for the kept representative of each cluster, else the index it duplicates."""
    return find_duplicate_report(texts, threshold, num_perm, ngram, keep=keep, scores=scores).representative.tolist()


def duplicate_verdicts(
    texts: Sequence[str], ids: Sequence[str], *, threshold: float, num_perm: int, ngram: int,
    keep: KeepPolicy = "first", scores: Sequence[float] | None = None,
) -> tuple[list[str], dict[int, tuple[str, str]]]:
    """Each text's cluster (its representative's id) and, for every text that is not a representative,
    (reason, detail): ``exact_duplicate`` or ``near_duplicate`` of which record."""
    report = find_duplicate_report(texts, threshold, num_perm, ngram, keep=keep, scores=scores)
    rep = report.representative
    cluster = [ids[j] for j in rep.tolist()]
    rejected: dict[int, tuple[str, str]] = {}
    for i in np.flatnonzero(rep != np.arange(len(rep))).tolist():
        if report.exact[i]:
            rejected[i] = ("exact_duplicate", f"duplicate of {cluster[i]}")
        else:
            rejected[i] = ("near_duplicate", f"duplicate of {cluster[i]} (Jaccard ~{report.similarity[i]:.2f})")
    return cluster, rejected


def dedup_records(
    records: list[dict[str, Any]], *, text_field: str, threshold: float, num_perm: int, ngram: int,
    keep: KeepPolicy = "first", score_field: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Keep one record per cluster; every record gets ``dedup_cluster`` (its representative's id)."""
    scores = [r[score_field] or 0.0 for r in records] if keep == "score" and score_field else None
    cluster, dropped = duplicate_verdicts([r[text_field] for r in records], [r["id"] for r in records],
                                          threshold=threshold, num_perm=num_perm, ngram=ngram, keep=keep,
                                          scores=scores)
    kept, rejected = [], []
    for i, record in enumerate(records):
        record = {**record, "dedup_cluster": cluster[i]}
        if i in dropped:
            rejected.append(rejection(record, "dedup", *dropped[i], text_field))
        else:
            kept.append(record)
    return kept, rejected


def matches_against(new: np.ndarray, reference: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(new row, reference row, estimated Jaccard) for each new signature's best reference match >= threshold."""
    if len(new) == 0 or len(reference) == 0:
        return []
    bands, rows = lsh_bands(threshold, new.shape[1])
    bn, br = band_hashes(new, bands, rows), band_hashes(reference, bands, rows)
    left = pl.DataFrame({"i": np.repeat(np.arange(len(new)), bands), "band": np.tile(np.arange(bands), len(new)),
                         "h": bn.ravel()})
    right = pl.DataFrame({"j": np.repeat(np.arange(len(reference)), bands),
                          "band": np.tile(np.arange(bands), len(reference)), "h": br.ravel()})
    cand = left.join(right, on=["band", "h"]).select("i", "j").unique()
    if cand.height == 0:
        return []
    i, j = cand["i"].to_numpy(), cand["j"].to_numpy()
    sim = estimate_jaccard(new[i], reference[j])
    best = (pl.DataFrame({"i": i, "j": j, "sim": sim}).filter(pl.col("sim") >= threshold)
            .sort(["i", "sim", "j"], descending=[False, True, False]).unique("i", keep="first", maintain_order=True))
    return [(int(a), int(b), float(s)) for a, b, s in best.iter_rows()]
