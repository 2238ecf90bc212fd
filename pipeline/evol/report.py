"""The Evolution section of an Evol-Instruct build report.

Survival per round and per operation, elimination reasons per round, and how
instructions grow: mean words, mean distinct content words (words outside the
stop list: a cheap count of the concepts and constraints an instruction
carries) and, when difficulty scoring ran, mean IFD of the published records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import mean
from typing import Any

import polars as pl

from pipeline.evol.eliminate import stop_words
from pipeline.report import md_table
from pipeline.text import words


def content_words(text: str) -> int:
    return len({w for w in words(text) if w not in stop_words()})


def _avg(values: Sequence[float]) -> str:
    return f"{mean(values):.1f}" if values else "–"


def growth_row(label: str, texts: Sequence[str]) -> dict[str, Any]:
    return {"words": _avg([len(words(t)) for t in texts]), "content words": _avg([content_words(t) for t in texts])}


def evolution_section(seeds: pl.DataFrame, rounds: Sequence[tuple[int, pl.DataFrame, pl.DataFrame]],
                      published: Sequence[dict[str, Any]]) -> str:
    """Markdown tables; ``rounds`` holds (round, survivors, rejected) per round stage."""
    by_round_published: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in published:
        by_round_published[r["round"]].append(r)
    scored = any(r.get("ifd") is not None for r in published)

    seed_texts = seeds["instruction"].to_list()
    round_rows = [{"round": 0, "pool": len(seed_texts), "survived": "(seeds)", "survival": "",
                   **growth_row("seeds", seed_texts), "response words": "–", "published": "",
                   **({"mean IFD": "–"} if scored else {})}]
    tried: Counter[str] = Counter()
    survived: Counter[str] = Counter()
    reason_rows: dict[str, Counter[int]] = defaultdict(Counter)
    for rnd, kept, rejected in rounds:
        # a rejection keeps the whole record it dropped: the operation that was tried is in it
        rej_ops = (rejected["record_json"].str.json_path_match("$.operation").to_list()
                   if rejected.height else [])
        kept_ops = kept["operation"].to_list() if kept.height else []
        tried.update(rej_ops + kept_ops)
        survived.update(kept_ops)
        for reason in (rejected["reason"].to_list() if rejected.height else []):
            reason_rows[reason][rnd] += 1
        n = kept.height + rejected.height
        texts = kept["instruction"].to_list() if kept.height else []
        pub = by_round_published.get(rnd, [])
        row = {"round": rnd, "pool": n, "survived": kept.height,
               "survival": f"{kept.height / n:.0%}" if n else "–", **growth_row(str(rnd), texts),
               "response words": _avg(kept["response_words"].to_list()) if kept.height else "–",
               "published": len(pub)}
        if scored:
            row["mean IFD"] = _avg([r["ifd"] for r in pub if r.get("ifd") is not None])
        round_rows.append(row)

    op_rows = [{"operation": op, "tried": tried[op], "survived": survived[op],
                "survival": f"{survived[op] / tried[op]:.0%}" if tried[op] else "–"} for op in sorted(tried)]
    numbers = [r for r, _, _ in rounds]
    reason_table = [{"reason": reason, **{f"round {r}": counts.get(r, 0) for r in numbers},
                     "total": sum(counts.values())}
                    for reason, counts in sorted(reason_rows.items(), key=lambda kv: -sum(kv[1].values()))]
    return "\n".join([
        "Survival and growth per round. `pool`: instructions the round tried to evolve (survivors of the round "
        "before, plus parents whose evolution failed, retried); `words` / `content words`: mean instruction "
        "length and mean distinct non-stop words of the round's survivors; `published`: survivors left after "
        "dedup.",
        "",
        md_table(round_rows),
        "",
        "Survival per operation:",
        "",
        md_table(op_rows),
        "",
        "Elimination reasons per round:",
        "",
        md_table(reason_table),
    ])
