"""Learning percentage (Mekala et al. 2024): how much of a record's learning happened in epoch 1.

``LP(1) = (P0 - P1) / (P0 - Pn)`` with ``P_i`` the record's perplexity (exp of
its mean response-token loss) after epoch ``i`` (``P0``: before training, ``n``:
the last epoch); 0 when the denominator is 0, as in the paper's code. Low LP
means hard: the model learned the record late. ``difficulty`` turns LP into a
percentile (0 = easiest, 1 = hardest) so budgets can be cut by rank.
"""

from __future__ import annotations

import numpy as np


def learning_percentage(losses: np.ndarray, epoch_columns: list[int]) -> np.ndarray:
    p = np.exp(np.minimum(losses, 50.0))
    p0, p1, pn = p[:, 0], p[:, epoch_columns[0]], p[:, epoch_columns[-1]]
    denom = p0 - pn
    with np.errstate(divide="ignore", invalid="ignore"):
        lp = np.where(denom != 0, (p0 - p1) / denom, 0.0)
    return lp


def difficulty_percentile(lp: np.ndarray) -> np.ndarray:
    """0 for the highest LP (easiest) ... 1 for the lowest (hardest); ties share their average rank."""
    n = len(lp)
    if n < 2:
        return np.zeros(n)
    order = np.argsort(-lp, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n)
    for value in np.unique(lp):  # average ranks of ties
        same = lp == value
        ranks[same] = ranks[same].mean()
    return ranks / (n - 1)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores higher than a random negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
    return float(greater / (len(pos) * len(neg)))
