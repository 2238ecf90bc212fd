"""Histograms of a build, rendered to PNG for the report and the Prefect UI.

matplotlib with the Agg backend: no display needed, and the bytes depend only
on the values (no timestamps in the PNG), so re-publishing the same records
writes the same files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: a server or a Dask worker has no display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def histogram_png(values: Sequence[float], *, title: str, xlabel: str, bins: int = 20) -> bytes:
    """One histogram as PNG bytes; an empty input gives an empty, labelled plot."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    try:
        if len(values):
            ax.hist(values, bins=min(bins, max(1, len(set(values)))), color="#3b6fb6", edgecolor="white")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)
