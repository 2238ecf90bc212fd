"""Content fingerprints: what decides whether a stage's output is still valid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol


def digest(obj: Any) -> str:
    """sha256 of an object's canonical JSON (sorted keys, no whitespace)."""
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def files_digest(paths: Iterable[str | Path]) -> str:
    """sha256 over the names and bytes of some files, in the order given."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Fingerprinted(Protocol):
    def fingerprint_payload(self) -> dict[str, Any]: ...


def declared_fingerprint(recipe: Fingerprinted, stage: str, version: int, reads: Sequence[str], *,
                         omit: Sequence[str] = (), **extra: Any) -> str:
    """A stage's fingerprint from what it declares it reads.

    ``reads`` names parts of the recipe's fingerprint payload (paths there are already digests of their
    files): a top-level key (``"seed"``, ``"filter"``) or one key of a section (``"verify.timeout_s"``);
    ``omit`` drops keys of a section read whole that cannot change the output (``"verify.workers"``).
    ``extra`` adds what is not in the recipe (the upstream fingerprint, templates, digests of data).
    A part a stage depends on but does not declare lets a changed recipe reuse stale output:
    ``tests/test_fingerprints.py`` checks that every part of every recipe is declared somewhere.
    """
    p = recipe.fingerprint_payload()
    return digest({"stage": stage, "v": version, **{k: read(p, k, omit) for k in reads}, **extra})


def read(payload: dict[str, Any], path: str, omit: Sequence[str] = ()) -> Any:
    section, _, key = path.partition(".")
    value = payload[section]
    if key:
        return value[key] if value is not None else None
    if isinstance(value, dict):
        dropped = {o.partition(".")[2] for o in omit if o.partition(".")[0] == section}
        return {k: v for k, v in value.items() if k not in dropped}
    return value
