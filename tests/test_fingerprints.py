"""Every part of every recipe is declared by the stage it shapes, or said to shape nothing.

A stage's fingerprint is derived from the recipe parts it declares it reads
(``pipeline.fingerprint.declared_fingerprint``). A part no stage declares
would let a changed recipe reuse stale output; these tests find one in any
shipped recipe of any kind before a build does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.fingerprint import declared_fingerprint, read
from pipeline.kinds import get_kind
from pipeline.paths import RECIPES_DIR
from pipeline.recipe import load_recipe

RECIPES = sorted(RECIPES_DIR.glob("*.toml"))


@pytest.fixture(autouse=True)
def _demo_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mix demo reads the other demos' datasets: stand-ins (a manifest each) where it looks for them, so
    that its recipe loads before `make demo` has built them."""
    import pipeline.mix.recipe as recipe_module

    real = recipe_module._manifest_of

    def standin(path: Path) -> Path:
        manifest = real(path)
        if not manifest.is_file() and manifest.parent.parent.parent == RECIPES_DIR.parent.parent / "build":
            manifest = tmp_path / manifest.parent.parent.name / "manifest.json"
            manifest.parent.mkdir(parents=True, exist_ok=True)
            manifest.write_text("{}")
        return manifest

    monkeypatch.setattr(recipe_module, "_manifest_of", standin)


def leaves(payload: dict[str, Any]) -> list[str]:
    """``section.key`` for every key of a section, ``key`` for a top-level value."""
    out = []
    for k, v in payload.items():
        out += [f"{k}.{sub}" for sub in v] if isinstance(v, dict) and v else [k]
    return out


def test_the_shipped_recipes_are_found() -> None:
    assert {load_recipe(p).kind for p in RECIPES} == {"tinystories", "tinygsm", "evol_instruct", "mix"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_part_of_the_recipe_is_read_by_a_stage(path: Path) -> None:
    recipe = load_recipe(path)
    kind = get_kind(recipe.kind)
    reads = {r for rs in kind.reads().values() for r in rs}
    payload = recipe.fingerprint_payload()
    for r in reads:  # a declared part exists (a typo would silently read nothing)
        section, _, key = r.partition(".")
        assert section in payload and (not key or payload[section] is None or key in payload[section]), r
    for u in kind.unfingerprinted:
        section, _, key = u.partition(".")
        assert section in payload and (not key or key in payload[section]), u
    undeclared = [leaf for leaf in leaves(payload) if leaf != "kind" and leaf not in kind.unfingerprinted
                  and leaf not in reads and leaf.partition(".")[0] not in reads]
    assert not undeclared, f"{recipe.kind}: no stage declares {undeclared}: a change there would reuse stale output"


def test_a_fingerprint_follows_what_is_declared() -> None:
    recipe = load_recipe(RECIPES_DIR / "tinygsm-demo.toml")
    kind = get_kind("tinygsm")
    reads, omit = kind.reads()["verify"], tuple(kind.unfingerprinted)

    def verify_fp(**change: Any) -> str:
        r = recipe.model_copy(update={"verify": recipe.verify.model_copy(update=change)})
        return declared_fingerprint(r, "verify", 1, reads, omit=omit)

    base = verify_fp()
    assert verify_fp(timeout_s=recipe.verify.timeout_s + 1) != base
    assert verify_fp(min_agreement=0.9) != base
    assert verify_fp(workers=recipe.verify.workers + 3) == base  # parallelism cannot change a verdict
    p = recipe.fingerprint_payload()
    assert read(p, "verify.timeout_s") == recipe.verify.timeout_s
    assert "workers" not in read(p, "verify", omit)
