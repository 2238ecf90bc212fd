"""Evol-Instruct pieces without the model: operations, extraction, seeds, recipes, the report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.errors import RecipeError, UserError
from pipeline.evol.eliminate import check_evolution, check_response, extract_instruction, similarity
from pipeline.evol.evolve import EvolveSettings, pick_operation
from pipeline.evol.operations import OPERATIONS, TEMPLATE_MARKERS, judged_equal, operation
from pipeline.evol.seeds import load_seed_pool
from pipeline.llm.types import SamplingParams
from pipeline.paths import INSTRUCTIONS_FILE, SEEDS_FILE
from pipeline.recipe import parse_recipe

RULES = dict(min_words=4, max_words=200, max_growth=3.0, max_similarity=0.9, max_template_overlap=0.3)


def settings(**kw) -> EvolveSettings:
    base = dict(seed=1, operations=OPERATIONS, assignment="round_robin", min_words=4, max_words=200, max_growth=3.0,
                max_similarity=0.9, max_template_overlap=0.3, judge=False, retry_failed=True,
                evolve_params=SamplingParams(), response_params=SamplingParams(), response_min_words=3,
                allow_truncated=False)
    return EvolveSettings(**(base | kw))


def test_every_operation_has_a_template_with_the_instruction_and_a_stable_id() -> None:
    ids = set()
    for name in OPERATIONS:
        for math in (False, True):
            op = operation(name, math)
            text = op.prompt("List three fruits.")
            assert "List three fruits." in text and "{" not in text
            assert op.kind == ("breadth" if name == "breadth" else "depth")
            assert ("numeric answer" in text) == math
            ids.add(op.template_id)
            assert operation(name, math).template_id == op.template_id
    assert len(ids) == 2 * len(OPERATIONS)  # math and general variants are different templates
    with pytest.raises(ValueError):
        operation("shorten")  # type: ignore[arg-type]


def test_round_robin_gives_each_instruction_the_next_operation_every_round() -> None:
    s = settings()
    ops = [pick_operation("00000000abcdef12", r, s) for r in range(len(OPERATIONS))]
    assert sorted(ops) == sorted(OPERATIONS)  # every operation once over len(ops) rounds
    mix = settings(assignment="random", operations=("deepen", "deepen", "breadth"))
    picks = [pick_operation(f"{i:016x}", 1, mix) for i in range(300)]
    assert 150 < picks.count("deepen") < 250 and set(picks) == {"deepen", "breadth"}
    assert picks == [pick_operation(f"{i:016x}", 1, mix) for i in range(300)]  # seeded


def test_extraction_strips_a_leading_label_and_quotes_only() -> None:
    assert extract_instruction('Rewritten prompt: "Name three red fruits."') == "Name three red fruits."
    assert extract_instruction("#Rewritten Prompt#:\nName three red fruits.") == "Name three red fruits."
    assert extract_instruction("Created Prompt - Why do owls hoot?") == "Why do owls hoot?"
    kept = 'Say "hi" to the "team".'
    assert extract_instruction(kept) == kept  # inner quotes are content
    leak = "Name fruits. #Rewritten Prompt#: Name red fruits."
    assert extract_instruction(leak) == leak  # a marker later on is a leak for elimination to reject
    assert extract_instruction("  \n ") is None


def test_evolution_rules_on_hand_made_cases() -> None:
    op = operation("add_constraints")
    parent = "Name three fruits that are yellow."
    assert check_evolution(parent, None, op, **RULES)[0] == "empty"
    assert check_evolution(parent, "Rewritten prompt: name fruits", op, **RULES)[0] == "template_leak"
    copied = "Add one more constraint or requirement. Keep every detail and every input of it."
    assert check_evolution(parent, copied, op, **RULES)[0] == "copied_prompt"
    assert check_evolution(parent, "Fruits?", op, **RULES)[0] == "length_out_of_bounds"
    long = parent + " " + " ".join(["and explain why each one is yellow in great detail"] * 3)
    assert check_evolution(parent, long, op, **RULES) == ("length_out_of_bounds", "36 words from 6: x6.0, outside x0.33..x3")
    assert check_evolution(parent, "Name three yellow fruits that are.", op, **RULES)[0] == "no_information_gain"
    good = "Name three fruits that are yellow and grow on trees, and say which one is sweetest."
    assert check_evolution(parent, good, op, **RULES) is None
    for marker in TEMPLATE_MARKERS:
        assert check_evolution(parent, f"Name three fruits, {marker}, that are yellow.", op, **RULES)[0] \
            == "template_leak"


def test_response_rules_on_hand_made_cases() -> None:
    q = "List four ways to save water at home."
    assert check_response(q, "I'm sorry, I cannot help with that.", "stop", min_words=3)[0] == "refusal"
    assert check_response(q, "Of the, and it is.", "stop", min_words=3)[0] == "stopwords_only"
    assert check_response(q, "Shorter showers.", "stop", min_words=3)[0] == "response_too_short"
    assert check_response(q, "Turn off the tap while brushing", "length", min_words=3)[0] == "response_truncated"
    assert check_response(q, q, "stop", min_words=3)[0] == "response_copies_instruction"
    sorry_but_long = "Sorry for the wait! " + "Fix leaks, take short showers, reuse rinse water. " * 10
    assert check_response(q, sorry_but_long, "stop", min_words=3) is None  # the paper's rule: sorry AND short
    assert check_response(q, "Fix leaks, take short showers and reuse water.", "stop", min_words=3) is None
    assert similarity("a b c", "c b a") == 1.0


def test_judge_verdicts() -> None:
    assert judged_equal("Equal") is True and judged_equal("Not Equal.") is False
    assert judged_equal("They are not equal") is False and judged_equal("Hmm, maybe") is None


def test_seed_pools_from_the_shipped_files_a_user_file_and_errors(tmp_path: Path) -> None:
    general = load_seed_pool(INSTRUCTIONS_FILE)
    assert len(general.seeds) == 60 and not general.math and general.seeds[0].id == "inst-001"
    gsm = load_seed_pool(SEEDS_FILE, limit=5)
    assert gsm.math and len(gsm.seeds) == 5 and gsm.seeds[0].answer == 5.5  # questions with answers: math
    assert not load_seed_pool(SEEDS_FILE, limit=5, math=False).math
    user = tmp_path / "mine.jsonl"
    user.write_text('{"prompt": "Why is the sea salty?"}\n\n{"prompt": "Why is the sea salty?"}\n')
    pool = load_seed_pool(user)
    assert [s.instruction for s in pool.seeds] == ["Why is the sea salty?"]  # same id once
    user.write_text('{"text": "x"}\n')
    with pytest.raises(UserError, match="seeds.field"):
        load_seed_pool(user)
    user.write_text('{"prompt": ""}\n')
    with pytest.raises(UserError, match=r"mine.jsonl:1: no text in field 'prompt'"):
        load_seed_pool(user)
    user.write_text("not json\n")
    with pytest.raises(UserError, match="not a JSON line"):
        load_seed_pool(user)
    with pytest.raises(UserError, match="no such seed file"):
        load_seed_pool(tmp_path / "missing.jsonl")


def test_recipe_defaults_and_mistakes(tmp_path: Path) -> None:
    r = parse_recipe({"kind": "evol_instruct", "name": "e"})
    assert r.evolve.rounds == 4 and r.evolve.operations == OPERATIONS and r.responder == r.backend
    r = parse_recipe({"kind": "evol_instruct", "name": "e", "response_backend": {"n_threads": 1}})
    assert r.responder.kind == "llamacpp" and r.responder.n_threads == 1
    with pytest.raises(RecipeError, match=r"evolve.operations.0: must be 'add_constraints'"):
        parse_recipe({"kind": "evol_instruct", "name": "e", "evolve": {"operations": ["shorten"]}})
    with pytest.raises(RecipeError, match="evolve.rounds: must be greater than or equal to 1"):
        parse_recipe({"kind": "evol_instruct", "name": "e", "evolve": {"rounds": 0}})
    with pytest.raises(RecipeError, match="seeds.path: no such seed file or published dataset"):
        parse_recipe({"kind": "evol_instruct", "name": "e", "seeds": {"path": str(tmp_path / "nope.jsonl")}})
    with pytest.raises(RecipeError, match=r"evolve: min_words \(50\) is larger than max_words"):
        parse_recipe({"kind": "evol_instruct", "name": "e", "evolve": {"min_words": 50, "max_words": 10}})


def test_the_report_counts_survival_per_round_and_operation() -> None:
    from pipeline.evol.report import evolution_section
    from pipeline.records import rejected_frame, rejection

    seeds = pl.DataFrame({"instruction": ["Name fruits.", "Why is the sky blue?"]})
    kept1 = pl.DataFrame([{"instruction": "Name three yellow fruits that grow on trees.", "operation": "deepen",
                           "response_words": 12}])
    rej1 = rejected_frame([rejection({"id": "a", "instruction": "x", "operation": "breadth"}, "round-1",
                                     "template_leak", "", "instruction")])
    md = evolution_section(seeds, [(1, kept1, rej1), (2, kept1.clear(), rejected_frame([]))],
                           [{"round": 1, "ifd": 0.8}])
    assert "| 1 | 2 | 1 | 50% | 8.0 | 5.0 | 12.0 | 1 | 0.8 |" in md
    assert "| deepen | 1 | 1 | 100% |" in md and "| breadth | 1 | 0 | 0% |" in md
    assert "| template_leak | 1 | 0 | 1 |" in md
    assert "| 2 | 0 | 0 | – |" in md  # an empty round still has its row
    json.dumps(md)


# what the evolution demo published before this rule, read one by one (issue 17): statements, answers,
# and a prompt about prompts; each passed every other rule
NOT_INSTRUCTIONS = [
    "We should wash our hands before eating, as washing our hands can help prevent the spread of germs.",
    "One of the most effective ways to get a good night's sleep is by waking up early and having breakfast "
    "before your bedtime.",
    "The five animals listed in the ocean are the Blue Whale, the Great Barrier Reef, the Mona Lisa and the shark.",
    "Create a new prompt that is related to the creation of a brand new prompt.",
]


@pytest.mark.parametrize("child", NOT_INSTRUCTIONS)
def test_a_rewrite_that_asks_for_nothing_is_not_an_instruction(child: str) -> None:
    parent = "Explain why we should wash our hands before eating."
    op = operation("breadth")
    reason, detail = check_evolution(parent, child, op, **(RULES | {"max_growth": 10.0}))
    assert reason == "not_an_instruction" and detail


def test_every_shipped_seed_asks_for_something() -> None:
    from pipeline.evol.eliminate import asks_for_something

    for path, field in ((INSTRUCTIONS_FILE, "instruction"), (SEEDS_FILE, "question")):
        for line in path.read_text().splitlines():
            assert asks_for_something(json.loads(line)[field]), line
    for text in ("In three sentences, explain why the sky is blue.", "Please list four ways to save water.",
                 "Could you sort these words: oak, owl.", "Tom has 3 boxes of 8 pencils. Find the total."):
        assert asks_for_something(text), text
