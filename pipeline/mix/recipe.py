"""The mix recipe: the published datasets it draws from (``[[sources]]``) and how many records (``[mix]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipeline.config import Section
from pipeline.dedup import DedupConfig
from pipeline.difficulty.config import DifficultyConfig
from pipeline.errors import RecipeError
from pipeline.fingerprint import files_digest
from pipeline.fluency import FluencyConfig
from pipeline.recipe import BaseRecipe


class MixSource(Section):
    """One published dataset a mix draws from: a ratio of ``[mix] records``, or a token budget."""

    path: str = Field(description="a dataset folder, its manifest.json, or an fsspec URL (s3://, file://...)")
    name: str | None = Field(None, description="the `source` column's value (default: the folder's parent, "
                             "the build's name)")
    ratio: float | None = Field(None, gt=0.0, description="a share of [mix] records (ratios are normalised)")
    tokens: int | None = Field(None, ge=1, description="records up to this many tokens (their num_tokens)")
    split: str = "train"
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for a URL")

    @model_validator(mode="after")
    def _one_amount(self) -> MixSource:
        if (self.ratio is None) == (self.tokens is None):
            raise ValueError("give a source either a ratio or a token budget (tokens), not both or neither")
        return self

    @property
    def is_url(self) -> bool:
        return "://" in self.path

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [p for p in self.path.rstrip("/").removesuffix("manifest.json").rstrip("/").split("/") if p]
        return parts[-2] if len(parts) >= 2 and parts[-1] == "dataset" else (parts[-1] if parts else self.path)


class MixConfig(Section):
    records: int | None = Field(None, ge=1, description="records in the mix, shared by the sources' ratios")


class MixRecipe(BaseRecipe):
    """A mixture of published datasets (docs/mix.md): sampled by ratio or token budget, deduplicated across
    sources, every record keeping its source and source id."""

    kind: Literal["mix"] = "mix"
    sources: list[MixSource] = Field(min_length=1)
    mix: MixConfig = MixConfig()
    # A mix re-publishes records that other builds published: checking them against the published index
    # would drop them all. Duplicates across the mix's sources are still removed.
    dedup: DedupConfig = DedupConfig(cross_build=False)
    # Its records were scored by their own builds; the proxy and the fluency model are not run again.
    difficulty: DifficultyConfig = DifficultyConfig(enabled=False)
    fluency: FluencyConfig = FluencyConfig(enabled=False)

    @model_validator(mode="after")
    def _amounts(self) -> MixRecipe:
        ratios = [s.ratio is not None for s in self.sources]
        if any(ratios) and not all(ratios):
            raise ValueError("sources: give every source a ratio, or every source a token budget")
        if all(ratios) and self.mix.records is None:
            raise ValueError("mix.records: the number of records the ratios share is missing")
        labels = [s.label for s in self.sources]
        if dupes := sorted({x for x in labels if labels.count(x) > 1}):
            raise ValueError(f"sources: two sources are named {dupes[0]!r}; give them names")
        if self.difficulty.enabled or self.fluency.enabled or self.decontaminate.eval_sets:
            raise ValueError("a mix carries the scores its sources gave their records and runs no model: "
                             "[difficulty], [fluency] and [decontaminate] do not apply (build the sources with them)")
        return self

    # Sections a mix has from BaseRecipe but never uses (it runs no model, scores nothing): left out of
    # its build id, so that editing them changes nothing.
    UNUSED: ClassVar[tuple[str, ...]] = ("backend", "sampling", "difficulty", "fluency", "judge", "decontaminate")

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = {k: v for k, v in super().fingerprint_payload().items() if k not in self.UNUSED}
        for source, data in zip(self.sources, payload["sources"], strict=True):
            # a local source is the dataset it holds, wherever it lies; a URL is itself (on every machine)
            data["path"] = source.path if source.is_url else files_digest([_manifest_of(Path(source.path))])
            data["name"] = source.label
            del data["storage_options"]  # credentials and endpoints: not data
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        return {**super().resolve_paths(resolve), "sources": [
            s if s.is_url else s.model_copy(update={"path": str(resolve(Path(s.path)))}) for s in self.sources]}

    def check_files(self, source: str) -> None:
        super().check_files(source)
        for i, s in enumerate(self.sources):
            if not s.is_url and not _manifest_of(Path(s.path)).is_file():
                raise RecipeError(f"{source}: sources.{i}.path: no published dataset at {s.path} (no manifest.json)")


def _manifest_of(path: Path) -> Path:
    return path if path.name == "manifest.json" else path / "manifest.json"
