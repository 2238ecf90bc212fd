"""Exemplar pools: the shipped examples are good examples, and who sees which is fixed by the seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.evol.build import evolution_exemplars
from pipeline.evol.eliminate import asks_for_something, check_evolution
from pipeline.evol.evolve import draw_exemplars, evolve_messages
from pipeline.evol.operations import operation
from pipeline.exemplars import load_pool
from pipeline.paths import EVOLUTION_EXEMPLARS_FILE, RECIPES_DIR, STORY_EXEMPLARS_FILE, VOCAB_DIR
from pipeline.recipe import load_recipe
from pipeline.tinystories.recipe import STORY_FEATURES, StoryFilterConfig
from pipeline.tinystories.filters import check_story
from pipeline.tinystories.prompts import StorySpec, story_exemplars, story_messages, story_prompt
from pipeline.tinystories.vocab import load_vocabulary
from tests.test_evol import RULES, settings


def test_every_example_story_passes_the_filters_it_teaches() -> None:
    pool, vocab = story_exemplars(STORY_EXEMPLARS_FILE), load_vocabulary(VOCAB_DIR)
    demo = load_recipe(RECIPES_DIR / "tinystories-demo.toml").filter
    for e in pool.items:
        record = {"story": e.fields["story"], "words": e.fields["words"], "finish_reason": "stop"}
        for cfg in (StoryFilterConfig(), demo):
            assert check_story(record, vocab, cfg) is None, (e.id, check_story(record, vocab, cfg))
        assert '"' in e.fields["story"] or "Dialogue" not in e.fields["features"], e.id
    covered = {f for e in pool.items for f in e.fields["features"]}
    assert covered == set(STORY_FEATURES) and any(not e.fields["features"] for e in pool.items)


def test_every_example_evolution_survives_elimination_and_asks_for_something() -> None:
    pool = evolution_exemplars(EVOLUTION_EXEMPLARS_FILE)
    for e in pool.items:
        op = operation(e.fields["operation"], e.fields["math"])
        assert check_evolution(e.fields["parent"], e.fields["child"], op, **RULES) is None, e.id
        assert asks_for_something(e.fields["child"]), e.id
    for math in (False, True):  # every operation has an example of each kind
        assert {e.fields["operation"] for e in pool.items if e.fields["math"] == math} == {
            "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth"}


def test_a_draw_is_fixed_by_its_key_and_varies_across_keys() -> None:
    pool = story_exemplars(STORY_EXEMPLARS_FILE)
    def ids(*key: object) -> tuple[str, ...]:
        return tuple(e.id for e in pool.draw(2, *key))

    assert ids(7, 3) == ids(7, 3) and len(set(ids(7, 3))) == 2
    assert len({ids(7, i) for i in range(20)}) > 10
    assert pool.draw(0, 7, 3) == () and len(pool.draw(50, 1)) == len(pool.items)
    assert pool.template_id.startswith("exemplars.stories@")


def test_an_evolution_sees_examples_of_its_own_kind_and_operation_first() -> None:
    s = settings(exemplars=2, pool=evolution_exemplars(EVOLUTION_EXEMPLARS_FILE))
    for name in ("deepen", "breadth"):
        for math in (False, True):
            op = operation(name, math)
            shown = draw_exemplars("abc", 1, op, math, s)
            assert len(shown) == 2 and all(e.fields["math"] == math for e in shown)
            assert shown[0].fields["operation"] == name
            messages = evolve_messages(op, "Name three fruits.", shown, math)
            assert [m.role for m in messages] == ["user", "assistant"] * 2 + ["user"]
            assert messages[1].content == shown[0].fields["child"] and messages[-1].content == op.prompt("Name three fruits.")
    assert draw_exemplars("abc", 1, operation("deepen"), False, settings()) == ()


def test_a_story_request_is_the_examples_then_the_prompt() -> None:
    pool = story_exemplars(STORY_EXEMPLARS_FILE)
    spec = StorySpec(0, "run", "dog", "happy", ("Twist",), False, 5)
    shown = pool.draw(2, spec.seed)
    messages = story_messages(spec, shown)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[-1].content == story_prompt(spec) and messages[1].content == shown[0].fields["story"]
    assert all(f'"{w}"' in messages[0].content for w in shown[0].fields["words"])


def test_a_bad_pool_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps({"id": "a", "story": "x"}) + "\n")
    with pytest.raises(UserError, match=r"pool.jsonl:1: an exemplar needs words"):
        load_pool(path, "t", ("words", "story"))
    path.write_text(json.dumps({"id": "a", "story": "x"}) + "\n" + json.dumps({"id": "a", "story": "y"}) + "\n")
    with pytest.raises(UserError, match="exemplar id 'a' appears twice"):
        load_pool(path, "t2", ("story",))


def test_every_example_rewrite_is_a_checked_problem_whose_solution_returns_its_answer() -> None:
    from pipeline.paths import REWRITE_EXEMPLARS_FILE
    from pipeline.solving.config import QuestionFilterConfig
    from pipeline.sandbox import Sandbox
    from pipeline.solving import check_question
    from pipeline.tinygsm.prompts import rewrite_exemplars

    pool = rewrite_exemplars(REWRITE_EXEMPLARS_FILE)
    assert len(pool.items) >= 12
    for e in pool.items:  # a rewrite the question checks would reject would teach the model to fail them
        assert check_question(e.fields["rewrite"], e.fields["question"], QuestionFilterConfig()) is None, e.id
    with Sandbox(workers=2, timeout_s=5.0) as box:
        results = box.run_many([e.fields["solution"] + "\nresult = simple_math_problem()\n" for e in pool.items])
    for e, r in zip(pool.items, results, strict=True):
        assert r.status == "ok" and abs(r.value - e.fields["answer"]) < 1e-9, (e.id, r)


def test_a_rewrite_request_is_its_drawn_examples_then_the_seed() -> None:
    from pipeline.paths import REWRITE_EXEMPLARS_FILE
    from pipeline.tinygsm.prompts import question_messages, question_prompt, rewrite_exemplars
    from pipeline.tinygsm.seeds import Seed

    pool = rewrite_exemplars(REWRITE_EXEMPLARS_FILE)
    seed = Seed("x", "Ana has 3 red apples and 4 green apples. How many apples does she have?", 7, None)
    shown = pool.draw(2, 12345)
    assert shown == pool.draw(2, 12345) and len({e.id for e in shown}) == 2
    chat = question_messages(seed, True, shown)
    assert [m.role for m in chat] == ["user", "assistant", "user", "assistant", "user"]
    assert json.loads(chat[1].content) == {"question": shown[0].fields["rewrite"]}
    assert chat[0].content == question_prompt(Seed(shown[0].id, shown[0].fields["question"], None, None), True)
    assert chat[-1].content == question_prompt(seed, True)
    assert question_messages(seed, False, ())[0].content == question_prompt(seed)  # exemplars = 0: none
