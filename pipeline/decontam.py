"""Decontamination: drop records that share a long n-gram with an evaluation set.

As in TinyGSM (13-grams against GSM8K test), text is compared after removing
punctuation and numbers, so a copied problem with changed numbers still
matches. The evaluation files are the user's; tinyforge ships none.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from pipeline.config import InputPath, Section
from pipeline.dedup import matches_against
from pipeline.errors import UserError
from pipeline.minhash import MinHasher
from pipeline.records import rejection


class EvalSetConfig(Section):
    path: Annotated[Path, InputPath(digest_key="file")]  # (its key in build ids since 2026)
    field: str = Field("question", description="the text field of a JSONL or Parquet file (a .txt file: its lines)")


class DecontaminateConfig(Section):
    """Records sharing a long n-gram with, or near-duplicating, a text of the evaluation files named here
    are dropped (every kind; see docs/decontamination.md)."""

    ngram: int = Field(13, ge=3, le=64, description="words per n-gram (after removing punctuation and numbers)")
    near_duplicates: bool = Field(True, description="also drop MinHash near-duplicates of eval texts")
    near_duplicate_threshold: float = Field(0.8, gt=0.0, lt=1.0)
    eval_sets: tuple[EvalSetConfig, ...] = ()

_LETTERS = re.compile(r"[a-z]+")


def ngram_words(text: str) -> list[str]:
    """Lower-case words with punctuation and numbers removed."""
    return _LETTERS.findall(text.lower())


def _key(gram: Iterable[str]) -> bytes:
    return hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest()


@dataclass
class NgramIndex:
    n: int = 13
    _grams: dict[bytes, str] = field(default_factory=dict)  # n-gram hash -> where it came from

    def add(self, text: str, source: str) -> None:
        w = ngram_words(text)
        for i in range(len(w) - self.n + 1):
            self._grams.setdefault(_key(w[i : i + self.n]), source)

    def match(self, text: str) -> tuple[str, str] | None:
        """(the shared n-gram, where it came from) for the first match, else None."""
        if not self._grams:
            return None
        w = ngram_words(text)
        for i in range(len(w) - self.n + 1):
            src = self._grams.get(_key(w[i : i + self.n]))
            if src is not None:
                return " ".join(w[i : i + self.n]), src
        return None

    def __len__(self) -> int:
        return len(self._grams)


def load_texts(path: Path, text_field: str) -> list[str]:
    """Texts of one field from JSONL or Parquet, or the lines of a .txt file; a file that cannot be read
    (not UTF-8, not Parquet, a bad line) is one UserError naming it."""
    try:
        return _texts(path, text_field)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); an evaluation file is UTF-8 JSONL, .txt "
                        "or Parquet") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _texts(path: Path, text_field: str) -> list[str]:
    if path.suffix == ".parquet":
        import polars as pl

        try:
            df = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        if text_field not in df.columns:
            raise UserError(f"{path}: no column {text_field!r}")
        return [t for t in df[text_field].to_list() if isinstance(t, str)]
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line).get(text_field)
            except (json.JSONDecodeError, AttributeError, RecursionError):
                raise UserError(f"{path}:{lineno}: not a JSON object line") from None
            if isinstance(value, str):
                texts.append(value)
    return texts


@dataclass
class EvalSets:
    """Evaluation texts with where each came from, and their n-gram index."""

    texts: list[str]
    sources: list[str]
    ngrams: NgramIndex


def load_eval_sets(sets: Iterable[tuple[Path, str]], n: int) -> EvalSets:
    texts, sources, index = [], [], NgramIndex(n)
    for path, text_field in sets:
        for i, text in enumerate(load_texts(path, text_field)):
            texts.append(text)
            sources.append(f"{path.name}#{i}")
            index.add(text, sources[-1])
    return EvalSets(texts, sources, index)


def build_index(sets: Iterable[tuple[Path, str]], n: int) -> NgramIndex:
    return load_eval_sets(sets, n).ngrams


def contaminated(texts: Sequence[str], evals: EvalSets | NgramIndex, *, near_threshold: float | None = None,
                 num_perm: int = 128, ngram: int = 5) -> dict[int, str]:
    """For each text that shares an n-gram with an eval text, or (with ``near_threshold``) is a MinHash
    near-duplicate of one, why: ``{index: detail}``."""
    index = evals.ngrams if isinstance(evals, EvalSets) else evals
    found: dict[int, str] = {}
    for i, text in enumerate(texts):
        if (hit := index.match(text)) is not None:
            gram, src = hit
            found[i] = f"{index.n}-gram {gram!r} in {src}"
    rest = [i for i in range(len(texts)) if i not in found]
    if near_threshold is not None and isinstance(evals, EvalSets) and evals.texts and rest:
        hasher = MinHasher(num_perm=num_perm, ngram=ngram)
        subset = texts if len(rest) == len(texts) else [texts[i] for i in rest]
        for i, j, sim in matches_against(hasher.signatures(subset),
                                         hasher.signatures(evals.texts), near_threshold):
            found[rest[i]] = f"near-duplicate of {evals.sources[j]} (Jaccard ~{sim:.2f})"
    return found


def decontaminate(records: list[dict[str, Any]], evals: EvalSets | NgramIndex, text_field: str, *,
                  near_threshold: float | None = None, num_perm: int = 128, ngram: int = 5,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drop records sharing an n-gram with an eval text, then (optionally) MinHash near-duplicates of one."""
    found = contaminated([r[text_field] for r in records], evals, near_threshold=near_threshold,
                         num_perm=num_perm, ngram=ngram)
    kept = [r for i, r in enumerate(records) if i not in found]
    rejected = [rejection(records[i], "decontaminate", "contaminated", found[i], text_field) for i in sorted(found)]
    return kept, rejected
