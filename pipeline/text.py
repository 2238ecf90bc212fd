"""Small, pure text measurements shared by filters and dedup."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[A-Za-z]+")
_SENTENCE_END = re.compile(r"[.!?]['\"\u2019\u201d)\]]*\s*$")

# Typographic characters a clean English story may contain.
_ALLOWED_NON_ASCII = set("\u2018\u2019\u201c\u201d\u2014\u2013\u2026\u00a0")

_MARKUP = [
    ("code_fence", re.compile(r"```")),
    ("html_tag", re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*[^<>]*>")),
    ("markdown_heading", re.compile(r"(?m)^\s{0,3}#{1,6}\s")),
    ("markdown_emphasis", re.compile(r"\*\*[^*]+\*\*|__[^_]+__")),
    ("markdown_list", re.compile(r"(?m)^\s*(?:[-*+]|\d+[.)])\s+\S")),
    ("link", re.compile(r"https?://|www\.|\]\(")),
    ("table", re.compile(r"(?m)^\s*\|.*\|\s*$")),
]


def words(text: str) -> list[str]:
    """Lower-cased runs of ASCII letters. "Don't" gives ["don", "t"]."""
    return [w.lower() for w in _WORD.findall(text)]


def normalize(text: str) -> str:
    """Case, punctuation and spacing folded away: the key for exact duplicates."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.findall(r"[^\W_]+", text))


def repeated_ngram_fraction(tokens: list[str], n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for fresh text, near 1 for a loop."""
    if len(tokens) < n:
        return 0.0
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def non_ascii_fraction(text: str) -> float:
    """Share of non-space characters outside ASCII and ordinary typographic quotes."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    odd = sum(1 for c in chars if ord(c) > 127 and c not in _ALLOWED_NON_ASCII)
    return odd / len(chars)


def markup_kind(text: str) -> str | None:
    """The first kind of markup or code found in a text meant to be plain prose."""
    for name, pattern in _MARKUP:
        if pattern.search(text):
            return name
    return None


def ends_with_sentence(text: str) -> bool:
    """True when the text ends with ., ! or ?, possibly inside closing quotes."""
    return bool(_SENTENCE_END.search(text.rstrip()))
