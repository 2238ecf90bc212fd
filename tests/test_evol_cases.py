"""Elimination rules on real SmolLM2-135M evolutions, replayed from the response cache.

``fixtures/evol_cases.json`` holds, for each elimination reason the embedded
model produced, parents whose evolution (and response) ended with that reason,
with the completions as rows of the response cache
(``tests/fixtures/capture_evol_cases.py`` made it). The test loads the rows
into a fresh cache in front of the real embedded engine and runs the round
again: every completion must come from the cache, and every case must end
with its recorded reason.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.evol.evolve import EvolveSettings, evolve_batch
from pipeline.llm import CachedBackend, ResponseCache
from pipeline.llm.types import SamplingParams

CASES = json.loads((Path(__file__).parent / "fixtures" / "evol_cases.json").read_text())

# The rules 360 real evolutions of the 60 shipped seeds tripped. `empty` and `response_too_short` never
# happened there; they, and the LLM judge's verdicts, are covered by hand-made cases in test_evol.py.
EXPECTED = {"template_leak", "copied_prompt", "length_out_of_bounds", "no_information_gain", "refusal",
            "stopwords_only", "response_truncated", "response_copies_instruction", "survived"}


# Captured before the `not_an_instruction` rule: these evolutions are statements or answers ("The shop
# opens at nine.", "A plan to learn ten new words a week that involves the use of your mind!"), which now
# end there, before the rule they reached then. Read one by one when the rule was added.
NOW_NOT_AN_INSTRUCTION = {
    ("length_out_of_bounds", "inst-003", 1), ("length_out_of_bounds", "inst-004", 1), ("refusal", "inst-035", 3),
    ("refusal", "inst-004", 5), ("response_copies_instruction", "inst-007", 1),
    ("response_copies_instruction", "inst-036", 1), ("response_truncated", "inst-001", 1),
    ("response_truncated", "inst-028", 1), ("stopwords_only", "inst-044", 2), ("survived", "inst-018", 1),
    ("survived", "inst-021", 1)}


def expected_reason(case: dict) -> str:
    key = (case["reason"], case["parent"]["id"], case["round"])
    return "not_an_instruction" if key in NOW_NOT_AN_INSTRUCTION else case["reason"]


def settings() -> EvolveSettings:
    s = dict(CASES["settings"])
    s["operations"] = tuple(s["operations"])
    for k in ("evolve_params", "response_params"):
        p = s[k]
        s[k] = SamplingParams(p["temperature"], p["top_p"], p["max_tokens"], p["repeat_penalty"], tuple(p["stop"]))
    return EvolveSettings(**s)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory):
    from pipeline.llm.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine()
    if engine.model_id != CASES["model_id"]:
        pytest.fail(f"the fixture was captured with {CASES['model_id']}, the embedded model is {engine.model_id}: "
                    "re-run tests/fixtures/capture_evol_cases.py")
    cache = ResponseCache(tmp_path_factory.mktemp("evol") / "cache.sqlite")
    cache.import_rows([row for case in CASES["cases"] for row in case["rows"]])
    yield CachedBackend(engine, cache)
    cache.close()


def test_the_fixture_covers_every_rule_the_model_trips() -> None:
    assert EXPECTED <= set(Counter(c["reason"] for c in CASES["cases"]))


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: f"{c['reason']}-{c['parent']['id']}-r{c['round']}")
def test_real_output_is_eliminated_for_its_reason(case: dict, replay: CachedBackend) -> None:
    before = replay.stats.misses
    out = evolve_batch([case["parent"]], case["round"], settings(), replay, replay)
    survivors, rejected, retry = out.survivors, out.rejected, out.retry
    assert replay.stats.misses == before, "a completion was not in the fixture: the prompts or keys changed"
    if expected_reason(case) == "survived":
        assert len(survivors) == 1 and not rejected and not retry
        child = survivors[0]
        assert child["parent_id"] == case["parent"]["id"] and child["operation"] == case["operation"]
        assert child["round"] == case["round"] and child["response"]
    else:
        assert not survivors and [r["reason"] for r in rejected] == [expected_reason(case)]
        assert retry == [case["parent"]]  # the failed parent goes back into the pool
