from __future__ import annotations

from pipeline.text import ends_with_sentence, markup_kind, non_ascii_fraction, normalize, repeated_ngram_fraction, words


def test_words_and_normalize() -> None:
    assert words("Don't run, Tom!") == ["don", "t", "run", "tom"]
    assert normalize("  Hello,\n WORLD!! ") == normalize("hello world")


def test_repeated_ngrams_catch_a_loop() -> None:
    fresh = words("The cat sat on the mat and then a dog ran into the big red barn.")
    loop = words("She hopped again and hopped again and hopped again and hopped again and hopped again.")
    assert repeated_ngram_fraction(fresh, 3) == 0.0
    assert repeated_ngram_fraction(loop, 3) > 0.6
    assert repeated_ngram_fraction(["a", "b"], 3) == 0.0


def test_markup_and_endings() -> None:
    assert markup_kind("# Title\nOnce upon a time.") == "markdown_heading"
    assert markup_kind("It was **very** fun.") == "markdown_emphasis"
    assert markup_kind("See http://example.com now.") == "link"
    assert markup_kind("```python\nprint(1)\n```") == "code_fence"
    assert markup_kind("Tom said, \"Hi!\" and ran home.") is None
    assert ends_with_sentence('He smiled. "Bye!"')
    assert ends_with_sentence("The end.")
    assert not ends_with_sentence("and then they went to the")


def test_non_ascii_share() -> None:
    assert non_ascii_fraction("Tom said \u201chi\u201d \u2014 and left\u2026") == 0.0
    assert non_ascii_fraction("Это история про кота.") > 0.5
