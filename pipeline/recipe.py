"""Recipes: one TOML file fully describes a build.

A recipe is validated into typed pydantic models before anything runs. Every
mistake becomes a :class:`~pipeline.errors.RecipeError` whose message is one
line naming the offending key, e.g.::

    flows/recipes/x.toml: generate.count: must be greater than 0 (got -3)

Relative paths inside a recipe are resolved against the recipe file's folder,
so a recipe means the same thing whatever directory it is run from.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from pipeline.config import InputFile, InputPath, Section, check_inputs, fingerprint_inputs, resolve_inputs
from pipeline.decontam import DecontaminateConfig, EvalSetConfig
from pipeline.dedup import DedupConfig
from pipeline.difficulty.config import DifficultyConfig, ProspectConfig
from pipeline.errors import RecipeError
from pipeline.fingerprint import digest
from pipeline.fluency import FluencyConfig
from pipeline.judge import JudgeConfig, Rubric
from pipeline.llm.config import (
    BACKEND_KINDS,
    BackendConfig,
    LlamaCppBackendConfig,
    OpenAIBackendConfig,
    SamplingConfig,
    VLLMBackendConfig,
    default_backend_kind,
    wants_structured_output,
)
from pipeline.operations import CostConfig, ScheduleConfig, StorageConfig
from pipeline.publish import PublishConfig
from pipeline.registry import get_kind, kind_names
from pipeline.solving.config import CalibrateConfig, QuestionFilterConfig, VerifyConfig

# The shared sections' models live beside their code; these names stay importable from here for a release.
__all__ = [
    "BACKEND_KINDS", "BackendConfig", "BaseRecipe", "CalibrateConfig", "CostConfig", "DecontaminateConfig",
    "DedupConfig", "DifficultyConfig", "EvalSetConfig", "FluencyConfig", "InputFile", "InputPath", "JudgeConfig", "LlamaCppBackendConfig",
    "OpenAIBackendConfig", "ProspectConfig", "ProspectingRecipe", "PublishConfig", "QuestionFilterConfig",
    "Recipe", "SamplingConfig", "ScheduleConfig", "Section", "StorageConfig", "VLLMBackendConfig",
    "VerifyConfig", "load_recipe", "parse_recipe", "wants_structured_output",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class BaseRecipe(Section):
    """What every kind's recipe model extends: name, seed, backend, the shared stages' sections."""

    name: str
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    output_root: Path = Path("build")
    backend: BackendConfig = LlamaCppBackendConfig()
    sampling: SamplingConfig = SamplingConfig()
    dedup: DedupConfig = DedupConfig()
    difficulty: DifficultyConfig = DifficultyConfig()
    fluency: FluencyConfig = FluencyConfig()
    judge: JudgeConfig = JudgeConfig()
    decontaminate: DecontaminateConfig = DecontaminateConfig()
    publish: PublishConfig = PublishConfig()
    # Operations, not data: none of these is part of the build id.
    schedule: ScheduleConfig | None = None
    cost: CostConfig = CostConfig()
    storage: StorageConfig = StorageConfig()

    _default_kind = field_validator("backend", mode="before")(staticmethod(default_backend_kind))

    @field_validator("output_root", mode="before")
    @classmethod
    def _local_root(cls, v: Any) -> Any:
        if isinstance(v, str) and "://" in v:
            raise ValueError(f"{v!r} is a URL: builds are written to a local folder (copy the published "
                             "dataset elsewhere with storage.publish_to)")
        return v

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a build name: use lowercase letters, digits, '.', '_' or '-' (at most 64)"
            )
        return v

    def content_hash(self) -> str:
        """Hash of everything that shapes the data, not of where files live.

        Paths are replaced by digests of what they point at, so the same
        recipe over the same inputs hashes alike on every machine.
        """
        return digest(self.fingerprint_payload())

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = self.model_dump(mode="json", exclude={"output_root", "schedule", "cost", "storage"})
        if payload["difficulty"]["sample"] is None:  # absent when unset, so earlier build ids stay valid
            del payload["difficulty"]["sample"]
        return fingerprint_inputs(self, payload)

    def resolve_paths(self, resolve: Callable[[Path], Path]) -> dict[str, Any]:
        """Updates that make relative paths absolute that are not input files (``InputPath`` fields are
        resolved by their type): none, unless a kind has such (a mix's sources may be URLs)."""
        return {}

    def check_files(self, source: str) -> None:
        """Raise RecipeError for an input file the recipe needs that is missing or unreadable, or a model
        file that does not exist (a kind checks what is not an ``InputPath`` after these)."""
        if self.output_root.exists() and not self.output_root.is_dir():
            raise RecipeError(f"{source}: output_root: {self.output_root} is a file, not a folder")
        try:
            check_inputs(self)
        except RecipeError as exc:
            raise RecipeError(f"{source}: {exc}") from None
        for where, model in self.model_files():
            if model.endswith(".gguf") and not Path(model).is_file():
                raise RecipeError(f"{source}: {where}: no such model file {model}")

    def model_files(self) -> list[tuple[str, str]]:
        """(recipe key, model) of every model the build loads by name or path."""
        found = [("publish.tokenizer", self.publish.tokenizer)] if self.publish.tokenizer else []
        if self.fluency.enabled:
            found.append(("fluency.model", self.fluency.model))
        if self.difficulty.enabled:
            found.append(("difficulty.ifd_model", self.difficulty.ifd_model))
        if isinstance(self.backend, LlamaCppBackendConfig):
            found.append(("backend.model", self.backend.model))
        return found

    @property
    def build_id(self) -> str:
        return f"{self.name}-{self.content_hash()[:10]}"

    @property
    def build_dir(self) -> Path:
        return self.output_root / self.name


# --- tinygsm ------------------------------------------------------------------


class ProspectingRecipe(BaseRecipe):
    """A recipe whose records are instructions with responses, which one-shot prospecting can score."""

    prospect: ProspectConfig = ProspectConfig()


Recipe = BaseRecipe  # what load_recipe returns: the model of the recipe's kind


def load_recipe(path: str | Path, *, output_root: str | Path | None = None, name: str | None = None,
                seed: int | None = None) -> Recipe:
    """Read, validate and resolve a recipe file. Raises RecipeError with one line."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        text = path.read_text(encoding="utf-8")
        # A build directory keeps its resolved recipe as JSON (recipe.json); users write TOML.
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{path}: not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to be a recipe") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a table of settings, not a {type(raw).__name__}")
    if name is not None:
        raw = {**raw, "name": name}
    if seed is not None:
        raw = {**raw, "seed": seed}
    recipe = parse_recipe(raw, source=str(path), base_dir=path.resolve().parent)
    if output_root is not None:
        recipe = recipe.model_copy(update={"output_root": Path(output_root).resolve()})
    return recipe


def parse_recipe(raw: dict[str, Any], *, source: str = "recipe", base_dir: Path | None = None) -> Recipe:
    kind = raw.get("kind")
    if kind is None:
        raise RecipeError(f"{source}: kind: missing (one of {', '.join(kind_names())})")
    if not isinstance(kind, str) or kind not in kind_names():
        raise RecipeError(f"{source}: kind: unknown recipe kind {kind!r} (one of {', '.join(kind_names())})")
    backend = raw.get("backend")
    backend_kind = backend.get("kind", "llamacpp") if isinstance(backend, dict) else None
    if isinstance(backend, dict) and (not isinstance(backend_kind, str) or backend_kind not in BACKEND_KINDS):
        raise RecipeError(
            f"{source}: backend.kind: unknown backend {backend['kind']!r} (one of {', '.join(BACKEND_KINDS)})"
        )
    found = get_kind(kind)
    try:
        recipe = found.recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(f"{source}: {_one_line(exc)}") from None
    _check_judge(recipe, found.rubric, source)
    if base_dir is not None:
        recipe = _resolve_paths(recipe, base_dir)
    recipe.check_files(source)
    return recipe


def _check_judge(recipe: BaseRecipe, rubric: Rubric | None, source: str) -> None:
    """A judge needs its kind's rubric, and its thresholds name criteria of it."""
    if not (recipe.judge.enabled or recipe.judge.min):
        return
    if rubric is None:
        raise RecipeError(f"{source}: recipe: judge: the {recipe.kind} kind has no judge rubric")
    if unknown := [k for k in recipe.judge.min if k not in rubric.numeric]:
        raise RecipeError(f"{source}: recipe: judge.min: no criterion {unknown[0]!r} in the {recipe.kind} rubric "
                          f"({', '.join(rubric.numeric)})")


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    # Drop what pydantic adds to a location beyond the user's keys: validator names, and the
    # backend's kind (the tag of the discriminated union), which is not a key of the section.
    loc = ".".join(str(p) for i, p in enumerate(first["loc"]) if not str(p).startswith("function-after")
                   and not (i > 0 and first["loc"][i - 1] == "backend" and p in BACKEND_KINDS)) or "recipe"
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "missing"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        msg = re.sub(r"^Input should be", "must be", msg)
        if keyed := re.match(r"^(\w+): (must be .*)$", msg):  # a section's own check of one of its keys
            loc = keyed[1] if loc == "recipe" else f"{loc}.{keyed[1]}"
            msg = keyed[2]
        elif "input" in first and not isinstance(first["input"], (dict, list)):
            msg += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{loc}: {msg}{more}"


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    def resolve(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    resolved = resolve_inputs(recipe, resolve)
    return resolved.model_copy(update={"output_root": resolve(recipe.output_root), **resolved.resolve_paths(resolve)})
