"""All difficulty scores for a set of (instruction, response) records, in one call.

The proxy model's cost grows with the records it trains on and scores (on 2
CPU cores with the default proxy, 35 ms a 25-word record and about 230 ms of one core a
story: benchmarks/difficulty.py),
so ``[difficulty] sample = N`` scores a random N of them, drawn with the
recipe's seed, and leaves the rest null; the S2L subset is then drawn from the
sample. The summary says which was done (``scored`` of ``records``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.difficulty.learning_percentage import difficulty_percentile, learning_percentage
from pipeline.difficulty.proxy import loss_trajectories
from pipeline.difficulty.s2l import balanced_select, kmeans
from pipeline.difficulty.config import DifficultyConfig

from pipeline.difficulty import COLUMNS

__all__ = ["COLUMNS", "DifficultyResult", "score_pairs"]


@dataclass
class DifficultyResult:
    columns: dict[str, list[Any]]  # one list per COLUMNS entry, one value per record
    summary: dict[str, Any]


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def sample_rows(n: int, size: int | None, seed: int) -> np.ndarray | None:
    """The rows a sample of ``size`` of ``n`` records scores, in order; None when every record is scored."""
    if size is None or n <= size:
        return None
    return np.sort(np.random.default_rng([seed, 0xD1FF]).choice(n, size, replace=False))


def score_pairs(pairs: Sequence[tuple[str, str]], cfg: DifficultyConfig, seed: int) -> DifficultyResult:
    """Every difficulty column for every record: computed on all of them, or on ``cfg.sample`` of them
    with null columns (and ``s2l_selected`` false) for the others."""
    rows = sample_rows(len(pairs), cfg.sample, seed)
    if rows is None:
        result = _score(pairs, cfg, seed)
        result.summary |= {"records": len(pairs), "scored": len(pairs), "sample": cfg.sample}
        return result
    part = _score([pairs[i] for i in rows], cfg, seed)
    columns: dict[str, list[Any]] = {}
    for name, values in part.columns.items():
        full: list[Any] = [False if name == "s2l_selected" else None] * len(pairs)
        for i, v in zip(rows.tolist(), values, strict=True):
            full[i] = v
        columns[name] = full
    return DifficultyResult(columns, part.summary | {"records": len(pairs), "scored": len(rows),
                                                      "sample": cfg.sample})


def _score(pairs: Sequence[tuple[str, str]], cfg: DifficultyConfig, seed: int) -> DifficultyResult:
    n = len(pairs)
    traj = loss_trajectories(pairs, cfg, seed)
    lp = learning_percentage(traj.losses, traj.epoch_columns)
    difficulty = difficulty_percentile(lp)
    labels = kmeans(traj.losses, cfg.s2l_clusters, seed)
    budget = max(1, round(cfg.s2l_budget * n))
    selected = np.zeros(n, dtype=bool)
    selected[balanced_select(labels, budget, seed)] = True

    ifd = ic_ifd = np.full(n, np.nan)
    ifd_summary = None
    if cfg.ifd:
        from pipeline.difficulty.ifd import LlamaScorer, ifd_scores

        scores = ifd_scores(pairs, LlamaScorer(cfg.ifd_model))
        ifd, ic_ifd = scores.ifd, scores.ic_ifd
        finite = ifd[np.isfinite(ifd)]
        ifd_summary = {"model": cfg.ifd_model, "mean": float(finite.mean()) if len(finite) else None,
                       "above_1": int((finite > 1).sum())}

    sizes = np.bincount(labels)
    clusters = [{"cluster": int(c), "size": int(sizes[c]), "selected": int(selected[labels == c].sum()),
                 "final_loss": round(float(traj.losses[labels == c, -1].mean()), 3),
                 "learning_percentage": round(float(lp[labels == c].mean()), 3)} for c in range(len(sizes))]
    return DifficultyResult(
        columns={
            "loss_trajectory": [[float(x) for x in row] for row in traj.losses.astype(np.float32)],
            "learning_percentage": [float(x) for x in lp],
            "difficulty": [float(x) for x in difficulty],
            "s2l_cluster": [int(x) for x in labels],
            "s2l_selected": [bool(x) for x in selected],
            "ifd": _finite_or_none(ifd),
            "ic_ifd": _finite_or_none(ic_ifd),
        },
        summary={"proxy": traj.stats, "epoch_columns": traj.epoch_columns, "s2l_budget": budget,
                 "s2l_selected": int(selected.sum()), "clusters": clusters, "ifd": ifd_summary,
                 "learning_percentage_mean": float(lp.mean()) if n else None},
    )
