"""SmallToLarge (S2L, Yang et al. 2024): cluster loss trajectories, then select a balanced budget.

K-means (Euclidean, k-means++ seeding, Lloyd iterations) groups records whose
loss fell the same way during proxy training. The budget is then spread over
clusters from the smallest to the largest: each takes an equal share of what
is left, all of itself when it is smaller than its share, and a random sample
(from the recipe's seed) otherwise. Small clusters, often the rare and hard
examples, are never crowded out by large easy ones.
"""

from __future__ import annotations

import numpy as np


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """Cluster labels for the rows of ``x`` (k-means++ seeding, Lloyd iterations)."""
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        centers.append(x[rng.choice(n, p=d2 / total)] if total > 0 else x[rng.integers(n)])
    c = np.asarray(centers, dtype=np.float64)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if (new == labels).all() and _ > 0:
            break
        labels = new
        for j in range(k):
            members = x[labels == j]
            if len(members):
                c[j] = members.mean(0)
    # Renumber by size (largest cluster is 0) so labels read the same run to run.
    sizes = np.bincount(labels, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[labels]


def balanced_select(labels: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Indices of the records S2L selects: clusters smallest first, equal shares of the remaining budget."""
    rng = np.random.default_rng(seed)
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    clusters.sort(key=len)
    left, chosen = min(budget, len(labels)), []
    for i, members in enumerate(clusters):
        share = left // (len(clusters) - i)
        take = members if len(members) <= share else rng.choice(members, size=share, replace=False)
        chosen.append(take)
        left -= len(take)
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of records whose cluster's majority class is their own class."""
    right = 0
    for c in np.unique(labels):
        right += np.bincount(truth[labels == c]).max()
    return right / len(labels)
