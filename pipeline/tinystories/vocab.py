"""The simple vocabulary of TinyStories: nouns, verbs and adjectives a small child knows.

Files in ``data/vocab/`` hold one lemma per line; an irregular word lists its
forms after the lemma (``mouse mice``, ``go went gone``, ``good better
best``). Regular forms are generated here. Generation is deliberately
generous (``hop`` also yields ``hoped``): the forms are used to *accept*
words, and accepting a rare false form costs nothing, while rejecting a
real one throws away a good story.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import UserError
from pipeline.fingerprint import files_digest

_VOWELS = set("aeiou")


def _ends_consonant_y(w: str) -> bool:
    return len(w) > 1 and w.endswith("y") and w[-2] not in _VOWELS


def _doubled(w: str, suffix: str) -> str | None:
    """hop -> hopped: consonant-vowel-consonant endings double their last letter."""
    if len(w) >= 3 and w[-1] not in _VOWELS | {"w", "x", "y"} and w[-2] in _VOWELS and w[-3] not in _VOWELS:
        return w + w[-1] + suffix
    return None


def noun_forms(lemma: str, irregular: tuple[str, ...] = ()) -> frozenset[str]:
    forms = {lemma, lemma + "s", lemma + "es", *irregular}
    if _ends_consonant_y(lemma):
        forms.add(lemma[:-1] + "ies")
    if lemma.endswith("f"):
        forms.add(lemma[:-1] + "ves")
    if lemma.endswith("fe"):
        forms.add(lemma[:-2] + "ves")
    return frozenset(forms)


def verb_forms(lemma: str, irregular: tuple[str, ...] = ()) -> frozenset[str]:
    forms = {lemma, lemma + "s", lemma + "es", lemma + "ed", lemma + "ing", *irregular}
    if lemma.endswith("e"):
        forms |= {lemma + "d", lemma[:-1] + "ing"}
    if lemma.endswith("ie"):
        forms.add(lemma[:-2] + "ying")
    if _ends_consonant_y(lemma):
        forms |= {lemma[:-1] + "ies", lemma[:-1] + "ied"}
    for suffix in ("ed", "ing"):
        if d := _doubled(lemma, suffix):
            forms.add(d)
    for form in irregular:
        forms.add(form + "s")  # "she sees": rare, but cheap to allow
    return frozenset(forms)


def adjective_forms(lemma: str, irregular: tuple[str, ...] = ()) -> frozenset[str]:
    forms = {lemma, lemma + "er", lemma + "est", lemma + "ly", *irregular}
    if lemma.endswith("e"):
        forms |= {lemma + "r", lemma + "st"}
    if lemma.endswith("le"):
        forms.add(lemma[:-1] + "y")  # gentle -> gently
    if _ends_consonant_y(lemma):
        forms |= {lemma[:-1] + "ier", lemma[:-1] + "iest", lemma[:-1] + "ily"}
    for suffix in ("er", "est"):
        if d := _doubled(lemma, suffix):
            forms.add(d)
    return frozenset(forms)


_FORMS = {"noun": noun_forms, "verb": verb_forms, "adjective": adjective_forms}


@dataclass(frozen=True)
class Vocabulary:
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    forms: dict[tuple[str, str], frozenset[str]]  # (pos, lemma) -> accepted forms
    known: frozenset[str]  # every accepted lower-case token, function words and names included
    digest: str

    def forms_of(self, pos: str, lemma: str) -> frozenset[str]:
        return self.forms.get((pos, lemma)) or _FORMS[pos](lemma)

    def __len__(self) -> int:
        return len(self.nouns) + len(self.verbs) + len(self.adjectives)


def _read_list(path: Path) -> list[tuple[str, ...]]:
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = tuple(line.lower().split())
        if not all(f.isalpha() and f.isascii() for f in fields):
            raise UserError(f"{path}:{lineno}: vocabulary entries are ASCII words, got {line!r}")
        entries.append(fields)
    return entries


_LOADED: dict[Path, Vocabulary] = {}


def load_vocabulary(vocab_dir: str | Path) -> Vocabulary:
    """Read nouns/verbs/adjectives (required) and function words/names (optional)."""
    vocab_dir = Path(vocab_dir).resolve()
    files = [vocab_dir / f"{n}.txt" for n in ("nouns", "verbs", "adjectives", "function_words", "names")]
    digest = files_digest(files)
    cached = _LOADED.get(vocab_dir)
    if cached is not None and cached.digest == digest:
        return cached

    lemmas: dict[str, tuple[str, ...]] = {}
    forms: dict[tuple[str, str], frozenset[str]] = {}
    known: set[str] = set()
    for pos, path in zip(("noun", "verb", "adjective"), files[:3], strict=True):
        if not path.is_file():
            raise UserError(f"missing vocabulary file {path}")
        entries = _read_list(path)
        if not entries:
            raise UserError(f"{path}: no words in vocabulary file")
        lemmas[pos] = tuple(dict.fromkeys(e[0] for e in entries))
        for lemma, *irregular in entries:
            f = _FORMS[pos](lemma, tuple(irregular))
            forms[(pos, lemma)] = f
            known |= f
    for path in files[3:]:
        if path.is_file():
            known |= {e[0] for e in _read_list(path)}

    vocab = Vocabulary(lemmas["noun"], lemmas["verb"], lemmas["adjective"], forms, frozenset(known), digest)
    _LOADED[vocab_dir] = vocab
    return vocab
