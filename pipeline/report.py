"""The build report (``report.md``) and the dataset card (``README.md``).

Both are rendered from the manifest plus a few things only the records know
(lengths, examples, rejection reasons), so what a maintainer reads in the
Prefect UI is exactly what is stored with the shards.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import polars as pl


def histogram(values: Sequence[int], bins: int = 10, width: int = 40) -> str:
    """A text histogram, one row per bin, bars scaled to the fullest bin."""
    if not values:
        return "(no data)"
    lo, hi = min(values), max(values)
    step = max(1, -(-(hi - lo + 1) // bins))
    counts = [0] * bins
    for v in values:
        counts[min((v - lo) // step, bins - 1)] += 1
    while counts and counts[-1] == 0:
        counts.pop()
    top = max(counts)
    label_w = len(str(lo + step * len(counts)))
    rows = []
    for k, c in enumerate(counts):
        a, b = lo + k * step, lo + (k + 1) * step - 1
        bar = "█" * round(width * c / top) if c else ""
        rows.append(f"{a:>{label_w}}–{b:<{label_w}} | {bar} {c}")
    return "\n".join(rows)


def rejection_table(rejected: pl.DataFrame | pl.LazyFrame) -> list[dict[str, Any]]:
    counts = (rejected.lazy().group_by("stage", "reason").len()
              .sort(["len", "stage", "reason"], descending=[True, False, False]).collect())
    return [{"stage": s, "reason": r, "count": n} for s, r, n in counts.iter_rows()]


def stage_table(stages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in stages:
        rows.append({
            "stage": s["name"],
            "in": s["stats"].get("in", ""),
            "kept": s["rows"].get("records", ""),
            "rejected": s["rows"].get("rejected", 0),
            "seconds": round(s["seconds"], 1),
            "status": "reused" if s["skipped"] else "ran",
        })
    return rows


def usage_table(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Model calls, tokens and cost per stage that called a model, with a total row."""
    from pipeline.operations import CostConfig

    cost = CostConfig.model_validate(manifest.get("cost") or {})
    keys = ("model_calls", "cache_hits", "prompt_tokens", "completion_tokens", "retries")

    def row(stage: str, usage: dict[str, int]) -> dict[str, Any]:
        price = cost.of(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        return {"stage": stage, **{k.replace("_", " "): usage.get(k, 0) for k in keys},
                f"cost ({cost.currency})": f"{price:.4f}"}

    rows = [row(s["name"], u) for s in manifest.get("stages", [])
            if any((u := s["stats"].get("usage") or {}).get(k) for k in keys)]
    return rows + [row("total", manifest.get("usage", {}))]


def md_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


def render_report(
    manifest: dict[str, Any],
    *,
    rejected: pl.DataFrame | pl.LazyFrame,
    lengths: Sequence[int],
    examples: Sequence[str],
    length_unit: str = "words",
    difficulty: str | None = None,
    sections: Sequence[tuple[str, str]] = (),
    figures: Sequence[tuple[str, str]] = (),
) -> str:
    """``figures``: (title, path relative to the dataset folder) of images to show in the report."""
    splits = manifest["splits"]
    generated = next((s["rows"].get("records", 0) + s["rows"].get("rejected", 0)
                      for s in manifest.get("stages", []) if s["name"] == "generate"), 0)
    rej_rows = [{**r, "share": f"{r['count'] / generated:.1%}" if generated else ""} for r in rejection_table(rejected)]
    split_rows = [{"split": k + _split_note(v), "rows": v["rows"], "shards": len(v["shards"]),
                   "tokens": "–" if v.get("config") else v["num_tokens"]} for k, v in splits.items()]
    out = [
        f"# Build report: {manifest['recipe']['name']}",
        "",
        f"- build id: `{manifest['build_id']}`",
        f"- published: {manifest['published_at']}",
        f"- models: {', '.join(f'`{m}`' for m in manifest.get('models', []))}",
        f"- code: tinyforge {manifest['code']['version']}"
        + (f" ({manifest['code']['git_commit'][:10]})" if manifest["code"].get("git_commit") else ""),
        "",
        "## Published",
        "",
        md_table(split_rows),
        "",
        "## Stages",
        "",
        md_table(stage_table(manifest.get("stages", []))),
        "",
        "## Rejections",
        "",
        md_table(rej_rows),
        "",
        "## Generation",
        "",
        md_table(usage_table(manifest)),
        "",
        "What producing the generated records cost, summed over the runs that made them; cache hits are "
        "completions taken from the response cache instead of the model. Prices come from the recipe's "
        "`[cost]` section (the embedded model costs only time).",
        "",
        f"## Length ({length_unit}, published records)",
        "",
        "```",
        histogram(list(lengths)),
        "```",
        "",
    ]
    if figures:
        out += ["## Plots", ""] + [f"![{title}]({path})\n" for title, path in figures]
    for title, body in sections:
        out += [f"## {title}", "", body, ""]
    if difficulty:
        out += ["## Difficulty", "", difficulty, ""]
    out += [
        f"## {len(examples)} random examples",
        "",
    ]
    for k, ex in enumerate(examples, 1):
        out += [f"### Example {k}", "", ex, ""]
    return "\n".join(out)


def pick_examples(records: Sequence[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """``k`` records drawn with ``seed`` from the records in id order (only the ids are sorted: a
    :class:`~pipeline.records.RecordView` is not turned into dicts for it)."""
    column = getattr(records, "column", None)
    ids = column("id") if column is not None else [r["id"] for r in records]
    ordered = sorted(range(len(ids)), key=ids.__getitem__)
    return [records[i] for i in random.Random(seed).sample(ordered, min(k, len(ordered)))]


_SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]


def _split_note(meta: dict[str, Any]) -> str:
    if meta.get("subset_of"):
        return f" (subset of {meta['subset_of']})"
    if meta.get("config"):
        return f" (own configuration, schema {meta['schema']['id']})"
    return ""


def render_card(manifest: dict[str, Any], *, title: str, description: str, fields: dict[str, str]) -> str:
    """README.md whose YAML header lets Hugging Face `datasets` load the folder."""
    total = sum(s["rows"] for s in manifest["splits"].values() if not s.get("subset_of") and not s.get("config"))
    size = next((label for limit, label in _SIZE_CATEGORIES if total < limit), "n>100M")
    yaml = ["---", f"pretty_name: {title}", "language:", "- en", "task_categories:", "- text-generation",
            "size_categories:", f"- {size}", "tags:", "- synthetic", "- tinyforge", "configs:",
            "- config_name: default", "  data_files:"]
    subsets = {k for k, v in manifest["splits"].items() if v.get("subset_of") or v.get("config")}
    for split in manifest["splits"]:
        if split not in subsets:
            yaml += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    for subset in sorted(subsets):  # each in a folder of its own: a glob over data/ finds only the records
        folder = str(PurePosixPath(manifest["splits"][subset]["shards"][0]["path"]).parent) \
            if manifest["splits"][subset]["shards"] else subset
        yaml += [f"- config_name: {subset}", "  data_files:", "  - split: train",
                 f"    path: {folder}/{subset}-*.parquet"]
    yaml.append("---")
    lines = [
        *yaml,
        "",
        f"# {title}",
        "",
        description.strip(),
        "",
        f"Built by tinyforge {manifest['code']['version']} as `{manifest['build_id']}` "
        f"with {', '.join(f'`{m}`' for m in manifest.get('models', []))}.",
        "",
        "## Splits",
        "",
        "| split | rows | shards | tokens |",
        "|---|---|---|---|",
        *[f"| {k}{_split_note(v)} | {v['rows']} | {len(v['shards'])} | {'–' if v.get('config') else v['num_tokens']} |"
          for k, v in manifest["splits"].items()],
        "",
        "## Fields",
        "",
        f"Schema `{manifest['schema']['id']}` (`schema.json`).",
        "",
        *[f"- `{k}`: {v}" for k, v in fields.items()],
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/this/folder")',
        "",
        "import polars as pl",
        'df = pl.read_parquet("path/to/this/folder/data/train-*.parquet")',
        "```",
        "",
        "`manifest.json` lists every shard with its sha256; `tinyforge verify` checks them. "
        "`report.md` has counts, rejection reasons and examples; `rejected.parquet` keeps every rejected "
        "record with its reason.",
        "",
    ]
    return "\n".join(lines)
