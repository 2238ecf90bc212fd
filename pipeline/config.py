"""The base of every recipe section: unknown keys and silently converted values are errors.

A recipe section is a frozen pydantic model that extends :class:`Section`; the
config of a stage lives beside the stage's code and extends it too, so the
recipe is composed of the sections its kind's stages declare.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.fields import FieldInfo

from pipeline.errors import RecipeError
from pipeline.fingerprint import files_digest


def _scalar(annotation: Any) -> type | None:
    """int, float or bool, when a field holds one of them (or None): the types pydantic would coerce into."""
    args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (int, float, bool) else None


class Section(BaseModel):
    """Unknown keys are errors: a typo must never silently fall back to a default. Nor is a value of the
    wrong kind converted: ``count = true`` or ``count = "4"`` is an error, not 1 or 4."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_coercion(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, field in cls.model_fields.items():
            key = field.alias or name
            kind = _scalar(field.annotation)
            if kind is None or key not in data:
                continue
            value = data[key]
            wrong = (not isinstance(value, bool)) if kind is bool else isinstance(value, (bool, str))
            if wrong:
                what = "true or false" if kind is bool else "a number"
                raise ValueError(f"{key}: must be {what}, not {value!r}")
        return data


def check_word_range(min_words: int, max_words: int) -> None:
    """A section's ``min_words`` .. ``max_words`` must be a range (the filters, the evolution's checks)."""
    if min_words > max_words:
        raise ValueError(f"min_words ({min_words}) is larger than max_words ({max_words})")


# --- input files --------------------------------------------------------------


@dataclass(frozen=True)
class InputPath:
    """What a path field of a section means, declared on its type (``Annotated[Path, InputPath(...)]``).

    One declaration does the three things a path needs: it is resolved against the recipe file's folder,
    checked before anything runs (one line naming the key), and fingerprinted by what it points at, never
    by where it lies, so the same recipe over the same inputs has the same build id on every machine.
    """

    what: str = "file"  # the error's noun: "no such <what> <path>"
    when: str | None = None  # a field of the same section that must be set for the file to be needed
    folder_files: tuple[str, ...] = ()  # a folder of these files, each UTF-8 text with a line
    lines: bool = False  # UTF-8 text with a line that is not blank or a comment
    dataset: bool = False  # a file, or a published dataset's folder (its manifest.json is what counts)
    digest_key: str | None = None  # the fingerprint's key for the digest (default: the field's own name)
    absent: str = "no such"  # the error's wording of a missing file

    def files(self, path: Path) -> list[Path]:
        """The files whose names and bytes the fingerprint covers."""
        if self.folder_files:
            return [path / name for name in self.folder_files]
        if self.dataset and path.is_dir():
            return [path / "manifest.json"]
        return [path]

    def check(self, path: Path, key: str) -> None:
        """RecipeError (its message after the recipe's name) unless the file is there and readable."""
        if self.folder_files:
            for name in self.folder_files:
                _has_lines(path / name, key, self.what, self.absent)
        elif self.dataset:
            if not (path.is_file() or (path / "manifest.json").is_file()):
                raise RecipeError(f"{key}: {self.absent} {self.what} {path}")
        elif self.lines:
            _has_lines(path, key, self.what, self.absent)
        elif not path.is_file():
            raise RecipeError(f"{key}: {self.absent} {self.what} {path}")


InputFile = Annotated[Path, InputPath()]  # a file the build reads, always needed
ExemplarsFile = Annotated[Path, InputPath(when="exemplars")]  # needed when its section shows exemplars
FileWhenEnabled = Annotated[Path, InputPath(when="enabled")]  # needed when its section is enabled


def _has_lines(path: Path, where: str, what: str, absent: str) -> None:
    if not path.is_file():
        raise RecipeError(f"{where}: {absent} {what} {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RecipeError(f"{where}: {path} is not UTF-8 text") from None
    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        raise RecipeError(f"{where}: {path} is empty")


def _input_path(field: FieldInfo) -> InputPath | None:
    return next((m for m in field.metadata if isinstance(m, InputPath)), None)


def _sections(value: object) -> list[tuple[str, BaseModel]]:
    """(key suffix, section) of a field's value: a section, or each section of a tuple or list."""
    if isinstance(value, BaseModel):
        return [("", value)]
    if isinstance(value, (tuple, list)):
        return [(f".{i}", v) for i, v in enumerate(value) if isinstance(v, BaseModel)]
    return []


def resolve_inputs(section: BaseModel, resolve: Callable[[Path], Path]) -> BaseModel:
    """``section`` with every input path in it (nested sections too) made absolute by ``resolve``."""
    update: dict[str, object] = {}
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if _input_path(field) is not None and isinstance(value, Path):
            update[name] = resolve(value)
        elif isinstance(value, BaseModel):
            update[name] = resolve_inputs(value, resolve)
        elif isinstance(value, (tuple, list)) and any(isinstance(v, BaseModel) for v in value):
            update[name] = type(value)(resolve_inputs(v, resolve) if isinstance(v, BaseModel) else v for v in value)
    return section.model_copy(update=update) if update else section


def check_inputs(section: BaseModel, where: str = "") -> None:
    """RecipeError for the first input file that is needed and missing or unreadable, by its dotted key."""
    for name, field in type(section).model_fields.items():
        value, key = getattr(section, name), f"{where}{name}"
        spec = _input_path(field)
        if spec is not None and isinstance(value, Path):
            if spec.when is None or getattr(section, spec.when):
                spec.check(value, key)
        for suffix, sub in _sections(value):
            check_inputs(sub, f"{key}{suffix}.")


def fingerprint_inputs(section: BaseModel, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` (the section's JSON dump) with every input path replaced by a digest of its files."""
    for name, field in type(section).model_fields.items():
        if name not in payload:  # left out of the payload (operations, a section a kind does not use)
            continue
        value = getattr(section, name)
        spec = _input_path(field)
        if spec is not None and isinstance(value, Path):
            del payload[name]
            payload[spec.digest_key or name] = files_digest(spec.files(value))
        for suffix, sub in _sections(value):
            target = payload[name] if not suffix else payload[name][int(suffix[1:])]
            fingerprint_inputs(sub, target)
    return payload
