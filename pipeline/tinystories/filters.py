"""Cheap quality filters for stories. Every rejection names its reason.

Checks run in a fixed order and the first failure is the recorded reason;
``detail`` holds the measured value so a maintainer can tune thresholds from
the ``rejected`` table alone.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.tinystories.recipe import StoryFilterConfig
from pipeline.records import rejection
from pipeline.text import ends_with_sentence, markup_kind, non_ascii_fraction, repeated_ngram_fraction, words
from pipeline.tinystories.vocab import Vocabulary

# The commonest English words: a story with almost none of them is not English.
_ENGLISH_MARKERS = frozenset(
    "the a an and to was is he she it they of in on with his her said but for at that you i".split()
)
_POS = ("verb", "noun", "adjective")  # order of a record's `words`
# Small models talk about the task instead of doing it: "In this story, the verb
# 'cuddle' is used...", "The story ends with two very simple words".
_META = re.compile(
    r"\bthe (?:verb|noun|adjective)s?\b|\bsimple words\b|\b3[- ]year[- ]olds?\b|\bin this (?:short )?story\b"
    r"|\bthe story (?:starts|begins|ends|is about|was about)\b|\bno title\b",
    re.IGNORECASE,
)

REASONS = (
    "unfinished", "markup", "meta_text", "non_english", "too_short", "too_long", "repetitive",
    "missing_words", "missing_sentence", "out_of_vocabulary",
)


def check_story(record: dict[str, Any], vocab: Vocabulary, cfg: StoryFilterConfig) -> tuple[str, str] | None:
    """``None`` when the story passes, else ``(reason, detail)``."""
    story: str = record["story"]
    if record.get("finish_reason") == "length":
        return "unfinished", "hit max_tokens"
    if not ends_with_sentence(story):
        return "unfinished", f"ends with {story[-20:]!r}"
    if kind := markup_kind(story):
        return "markup", kind
    if m := _META.search(story):
        return "meta_text", repr(m.group(0))
    if (frac := non_ascii_fraction(story)) > cfg.max_non_ascii_fraction:
        return "non_english", f"non-ASCII share {frac:.3f}"
    tokens = words(story)
    markers = sum(t in _ENGLISH_MARKERS for t in tokens) / max(len(tokens), 1)
    if tokens and markers < 0.08:
        return "non_english", f"common-English-word share {markers:.3f}"
    if len(tokens) < cfg.min_words:
        return "too_short", f"{len(tokens)} words < {cfg.min_words}"
    if len(tokens) > cfg.max_words:
        return "too_long", f"{len(tokens)} words > {cfg.max_words}"
    rep = repeated_ngram_fraction(tokens, cfg.repeated_ngram_size)
    if rep > cfg.max_repeated_ngram_fraction:
        return "repetitive", f"repeated {cfg.repeated_ngram_size}-gram share {rep:.3f}"
    if cfg.min_required_words:
        present = set(tokens)
        missing = [w for pos, w in zip(_POS, record["words"], strict=True) if not (vocab.forms_of(pos, w) & present)]
        if len(record["words"]) - len(missing) < cfg.min_required_words:
            return "missing_words", ", ".join(missing)
    if record.get("sentence") and not contains_sentence(story, record["sentence"]):
        return "missing_sentence", record["sentence"]
    oov = out_of_vocabulary(story, vocab)
    if tokens and len(oov) / len(tokens) > cfg.max_oov_fraction:
        return "out_of_vocabulary", f"share {len(oov) / len(tokens):.3f}: {', '.join(sorted(set(oov))[:8])}"
    return None


def contains_sentence(story: str, sentence: str) -> bool:
    """Whether the story has the sentence's words in order, whole words, whatever the case, spacing,
    punctuation or quotes around them."""
    def norm(text: str) -> str:
        return " " + " ".join(re.findall(r"[a-z0-9']+", text.lower())) + " "

    return norm(sentence) in norm(story)


def out_of_vocabulary(story: str, vocab: Vocabulary) -> list[str]:
    """Tokens outside the simple vocabulary. Capitalised words mid-sentence are taken as names."""
    oov = []
    start_of_sentence = True
    for raw in _raw_tokens(story):
        if raw in {".", "!", "?"}:
            start_of_sentence = True
            continue
        low = raw.lower()
        if low not in vocab.known and not (raw[0].isupper() and not start_of_sentence):
            oov.append(low)
        start_of_sentence = False
    return oov


_RAW_TOKEN = re.compile(r"[A-Za-z]+|[.!?]")  # ASCII words, and the marks that end a sentence


def _raw_tokens(text: str) -> list[str]:
    return _RAW_TOKEN.findall(text)


def filter_stories(
    records: list[dict[str, Any]], vocab: Vocabulary, cfg: StoryFilterConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kept, rejected = [], []
    for record in records:
        verdict = check_story(record, vocab, cfg)
        if verdict is None:
            kept.append(record)
        else:
            rejected.append(rejection(record, "filter", *verdict, "story"))
    return kept, rejected
