from __future__ import annotations

from pipeline.paths import VOCAB_DIR
from pipeline.tinystories.vocab import adjective_forms, load_vocabulary, noun_forms, verb_forms


def test_shipped_vocabulary_is_about_1500_simple_words() -> None:
    v = load_vocabulary(VOCAB_DIR)
    assert 1400 <= len(v) <= 1600
    assert len(v.nouns) > len(v.verbs) > 100 and len(v.adjectives) > 100
    for words in (v.nouns, v.verbs, v.adjectives):
        assert len(set(words)) == len(words)
        assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    # function words and names are accepted, but never drawn as prompt words
    assert {"the", "she", "was", "lily"} <= v.known
    assert "the" not in v.nouns


def test_inflections_accept_real_forms() -> None:
    assert {"hang", "hangs", "hanging", "hung"} <= verb_forms("hang", ("hung", "hung"))
    assert {"hop", "hops", "hopped", "hopping"} <= verb_forms("hop")
    assert {"bake", "baked", "baking", "bakes"} <= verb_forms("bake")
    assert {"cry", "cried", "cries", "crying"} <= verb_forms("cry")
    assert {"mouse", "mice"} <= noun_forms("mouse", ("mice",))
    assert {"box", "boxes", "puppy", "puppies"} <= noun_forms("box") | noun_forms("puppy")
    assert {"leaf", "leaves"} <= noun_forms("leaf")
    assert {"big", "bigger", "biggest"} <= adjective_forms("big")
    assert {"happy", "happier", "happiest", "happily"} <= adjective_forms("happy")
    assert {"good", "better", "best"} <= adjective_forms("good", ("better", "best"))
    assert "jumped" not in verb_forms("run", ("ran", "run"))


def test_irregular_forms_from_the_shipped_files() -> None:
    v = load_vocabulary(VOCAB_DIR)
    assert "went" in v.forms_of("verb", "go")
    assert "children" in v.forms_of("noun", "child")
    assert "worse" in v.forms_of("adjective", "bad")
