"""Golden builds: each demo recipe, made small, built from a fixed response cache.

`tests/fixtures/golden/<kind>.completions.jsonl` holds every completion one
build of the small recipe needed, captured once with the embedded model;
`<kind>.rows.jsonl` holds what that build published. A build of the same
recipe from those completions makes no model call, so its rows depend only
on tinyforge's code: a refactor that changes them changed behaviour.

Difficulty and fluency columns are left out of the comparison: they come from a proxy
model trained on the CPU (and IFD from llama.cpp), whose floating-point
results differ between CPUs; nothing a stage keeps or rejects depends on them.
For the same reason the ``s2l`` subset (k-means over proxy losses) is not
compared row by row: tests/test_golden.py checks it, and the compared rows,
against oracles that need no fixture (content-hash ids, re-executed answers,
the filter's verdicts, the subset's definition).

    .venv/bin/python -m tests.golden capture    # rewrite the fixtures with the code as it is
    .venv/bin/python -m tests.golden rows       # rewrite only the rows, from the stored completions
    .venv/bin/python -m tests.golden identities # rewrite the build ids and stage fingerprints

`identities.json` pins the build id of every shipped recipe and the stage
fingerprints of each golden build: a change meant to keep behaviour (the
stage contract of issue 31) keeps every one of them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "golden"
RECIPES = REPO / "flows" / "recipes"
IGNORED = ("fluency_loss", "loss_trajectory", "learning_percentage", "difficulty", "s2l_cluster", "s2l_selected", "ifd", "ic_ifd")

# demo recipe -> the replacements that make it small (each must match exactly once)
SMALL = {
    # (no target: the golden rows are one round's, from the captured completions; tests/test_target.py
    # checks rounds)
    "tinystories": ("tinystories-demo.toml", {r"\ncount = 60 [^\n]*\n": "\ncount = 32\n",
                                              r"\ntarget = 8 [^\n]*\nmax_candidates = 240\n": "\n",
                                              r"\nbatch_size = 30 ": "\nbatch_size = 32 "}),
    # about 1 problem in 20 survives the 135M model: 32 keep a few
    # (calibration off: the golden rows are about generation and verification; tests/test_tinygsm_e2e.py
    # checks calibration)
    "tinygsm": ("tinygsm-demo.toml", {r"\ncount = 96 [^\n]*\n": "\ncount = 32\n",
                                      r"\ntarget = 5 [^\n]*\nmax_candidates = 192\n": "\n", r"\nbatch_size = 24 ": "\nbatch_size = 16 ",
                                      r"\n\[calibrate\]\n": "\n[calibrate]\nenabled = false\n"}),
    "evol_instruct": ("evol-demo.toml", {r"\nlimit = 24\n": "\nlimit = 6\n", r"\nrounds = 4\n": "\nrounds = 2\n",
                                         r"\ntarget = 20 [^\n]*\nmax_seeds = 60 [^\n]*\n": "\n"}),
}


def small_recipe(kind: str, out_dir: Path) -> Path:
    """The kind's demo recipe with small counts, building into ``out_dir / 'out'``."""
    name, changes = SMALL[kind]
    text = (RECIPES / name).read_text()
    changes = {**changes, r'\noutput_root = "[^"]*"': f'\noutput_root = "{out_dir / "out"}"',
               r'"\.\./\.\./data/': f'"{REPO / "data"}/'}
    for pattern, replacement in changes.items():
        text, n = re.subn(pattern, lambda _: replacement, text)
        if n != 1 and "data/" not in pattern:
            raise AssertionError(f"{name}: {pattern!r} matched {n} times; the demo recipe changed")
    path = out_dir / name
    path.write_text(text)
    return path


def published_rows(dataset: Path) -> list[dict]:
    """Every row of the default configuration (train, validation), without the CPU-dependent columns,
    in id order. Other configurations are left out: another table (a math build's verifier samples) or
    a subset whose membership comes from CPU-dependent scores (``s2l``); tests/test_golden.py checks
    those by what defines them."""
    from pipeline.shards import read_split, verify_dataset

    rows = []
    for split, meta in verify_dataset(dataset).manifest["splits"].items():
        if meta.get("config") or meta.get("subset_of"):
            continue
        rows += [{"split": split, **r} for r in read_split(dataset, split).drop(IGNORED, strict=False).to_dicts()]
    return sorted(rows, key=lambda r: (r["split"], r["id"]))


def canonical(rows: list[dict]) -> list[str]:
    return [json.dumps(r, sort_keys=True, ensure_ascii=False, default=str) for r in rows]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(line + "\n" for line in canonical(rows)), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_completions(kind: str, output_root: Path) -> int:
    """Put the kind's captured completions into the response cache under ``output_root``."""
    from pipeline.llm import ResponseCache, cache_path

    rows = read_jsonl(FIXTURES / f"{kind}.completions.jsonl")
    cache_path(output_root).parent.mkdir(parents=True, exist_ok=True)
    cache = ResponseCache(cache_path(output_root))
    try:
        cache.import_rows(rows)
    finally:
        cache.close()
    return len(rows)


def capture(kinds: list[str]) -> None:
    """Build each kind's small recipe with the model and store its completions and published rows."""
    import subprocess
    import tempfile

    from pipeline.llm import ResponseCache, cache_path

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = small_recipe(kind, Path(tmp))
            cli = "flows.cli" if (REPO / "flows" / "cli.py").is_file() else "pipeline.cli"
            subprocess.run([sys.executable, "-m", cli, "build", str(recipe)], check=True, cwd=REPO)
            out = Path(tmp) / "out"
            cache = ResponseCache(cache_path(out))
            try:
                completions = sorted(cache.rows_since(0.0), key=lambda r: r["key"])
            finally:
                cache.close()
            for c in completions:
                c["created_at"] = 0.0
            _write_jsonl(FIXTURES / f"{kind}.completions.jsonl", completions)
            dataset = next(out.glob("*/dataset"))
            _write_jsonl(FIXTURES / f"{kind}.rows.jsonl", published_rows(dataset))
            print(f"{kind}: {len(completions)} completions, {len(published_rows(dataset))} published rows")


IDENTITIES = FIXTURES / "identities.json"


def build_ids() -> dict[str, str]:
    """The build id of every shipped recipe (``flows/recipes/*.toml``): the hash of what the recipe asks.
    Not the mix's: its id covers what its sources published, so it exists only after they are built."""
    import tomllib

    from pipeline.recipe import load_recipe

    return {path.name: load_recipe(path).build_id for path in sorted(RECIPES.glob("*.toml"))
            if tomllib.loads(path.read_text(encoding="utf-8")).get("kind") != "mix"}


def stage_fingerprints(outcome: object) -> dict[str, str]:
    """Each stage of a golden build and its fingerprint (what it was computed from)."""
    return {s.name: s.fingerprint for s in outcome.stages}  # type: ignore[attr-defined]


def record_identities(kinds: list[str]) -> None:
    """Write the shipped recipes' build ids and the golden builds' stage fingerprints: a refactor that
    must change no behaviour must change none of them (tests/test_golden.py compares)."""
    import tempfile

    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe

    stages = {}
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = load_recipe(small_recipe(kind, Path(tmp)))
            load_completions(kind, Path(tmp) / "out")
            stages[kind] = stage_fingerprints(run_build(recipe))
    IDENTITIES.write_text(json.dumps({"build_ids": build_ids(), "stage_fingerprints": stages}, indent=1,
                                     sort_keys=True) + "\n", encoding="utf-8")
    print(f"{IDENTITIES}: {len(build_ids())} build ids, the stage fingerprints of {len(stages)} golden builds")


def rewrite_rows(kinds: list[str]) -> None:
    """Build each kind's small recipe from its stored completions (no model call) and rewrite only its
    published rows: for a change that adds columns, whose diff then shows that nothing else moved."""
    import tempfile

    from pipeline.kinds import run_build
    from pipeline.recipe import load_recipe

    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            recipe = load_recipe(small_recipe(kind, Path(tmp)))
            load_completions(kind, Path(tmp) / "out")
            outcome = run_build(recipe)
            if outcome.usage["model_calls"]:
                raise SystemExit(f"{kind}: {outcome.usage['model_calls']} model calls: the stored completions no "
                                 "longer cover the build; capture it instead")
            rows = published_rows(outcome.published.path)
            _write_jsonl(FIXTURES / f"{kind}.rows.jsonl", rows)
            print(f"{kind}: {len(rows)} published rows rewritten from the stored completions")


if __name__ == "__main__":
    commands = {"capture": capture, "rows": rewrite_rows, "identities": record_identities}
    if sys.argv[1:2] not in ([c] for c in commands):
        raise SystemExit("usage: python -m tests.golden capture|rows|identities [KIND ...]")
    commands[sys.argv[1]](sys.argv[2:] or list(SMALL))
