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
import typing
from urllib.parse import urlparse
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import RecipeError
from pipeline.fingerprint import digest, files_digest
from pipeline.paths import (
    EVOLUTION_EXEMPLARS_FILE,
    INSTRUCTIONS_FILE,
    PROSPECT_TASKS_FILE,
    REWRITE_EXEMPLARS_FILE,
    SEEDS_FILE,
    STORY_EXEMPLARS_FILE,
    STORY_SENTENCES_FILE,
    VOCAB_DIR,
)

STORY_FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")
Feature = Literal["Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict"]
VOCAB_FILES = ("nouns.txt", "verbs.txt", "adjectives.txt")


def _scalar(annotation: Any) -> type | None:
    """int, float or bool, when a field holds one of them (or None): the types pydantic would coerce into."""
    args = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    return args[0] if len(args) == 1 and args[0] in (int, float, bool) else None


class _Strict(BaseModel):
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


# --- LLM backends -------------------------------------------------------------


Section = _Strict  # what a recipe's sections extend (a kind's own too): unknown keys are errors


class LlamaCppBackendConfig(_Strict):
    """The embedded default: llama.cpp on the CPU, no server, no network."""

    kind: Literal["llamacpp"] = "llamacpp"
    model: str = Field(
        "smollm2-135m-instruct",
        description="a model shipped by a registry package, or a path to a .gguf file",
    )
    n_ctx: int = Field(2048, ge=256, le=131072, description="context per sequence")
    n_threads: int | None = Field(None, ge=1, description="default: all cores")
    engines: int | None = Field(
        None, ge=1, le=256, description="llama.cpp contexts sharing the weights (default: one per thread)")
    parallel: int = Field(16, ge=1, le=256, description="sequences each context decodes together")
    weights: Literal["auto", "f16", "file"] = Field(
        "auto", description="'auto': small quantized models run from a lossless float16 copy (faster kernels); "
        "'f16': always; 'file': the file as it is")
    # Measured on 96 TinyGSM rewrites with SmolLM2-135M: 10 -> 51 pass the question checks (benchmarks/structured.py).
    structured_output: bool = Field(
        True, description="constrain requests that carry a JSON schema with a llama.cpp grammar")

    @model_validator(mode="after")
    def _threads(self) -> LlamaCppBackendConfig:
        if self.engines and self.n_threads and self.engines > self.n_threads:
            raise ValueError(f"engines ({self.engines}) is more than n_threads ({self.n_threads}): "
                             "each engine needs a thread")
        return self


class OpenAIBackendConfig(_Strict):
    """Any OpenAI-compatible endpoint: vLLM's `vllm serve`, llama.cpp's server, a hosted API."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(..., description="e.g. http://127.0.0.1:8000/v1")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlparse(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{v!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
        return v
    model: str = Field(..., description="the model name the server expects")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key (never logged)")
    max_concurrency: int = Field(16, ge=1, le=4096, description="requests in flight at most")
    transport: Literal["aiohttp", "sdk"] = Field(
        "aiohttp", description="how requests are sent: 'aiohttp' (about 0.2 ms of CPU a request) or the openai "
        "package's client, 'sdk' (about 2-3 ms; see docs/backends.md)")
    min_concurrency: int = Field(1, ge=1, le=4096)
    timeout_s: float = Field(120.0, gt=0.0, le=3600.0, description="per request")
    max_retries: int = Field(8, ge=0, le=100)
    backoff_s: float = Field(0.5, gt=0.0, le=60.0, description="first retry delay; doubles each time, with jitter")
    max_backoff_s: float = Field(30.0, gt=0.0, le=600.0)
    repeat_penalty_param: str | None = Field(
        None, description="body field for repeat_penalty: 'repeat_penalty' (llama.cpp), 'repetition_penalty' (vLLM)")
    structured_output: Literal["none", "json_schema", "json_object"] = Field(
        "none", description="send a request's JSON schema as response_format: 'json_schema' (OpenAI, vLLM, "
        "llama-server) or 'json_object' with a 'schema' key (llama-cpp-python's server)")

    @field_validator("structured_output", mode="before")
    @classmethod
    def _structured_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # `structured_output = true` means the standard dialect
            return "json_schema" if value else "none"
        return value


class VLLMBackendConfig(_Strict):
    """vLLM's in-process engine on GPUs (pip install '.[gpu]')."""

    kind: Literal["vllm"] = "vllm"
    model: str = Field(..., description="a Hugging Face model id or local directory")
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(None, ge=256)
    max_num_seqs: int = Field(256, ge=1, le=65536)
    dtype: str = "auto"
    structured_output: bool = Field(True, description="use StructuredOutputsParams where a request has a schema")


def wants_structured_output(backend: LlamaCppBackendConfig | OpenAIBackendConfig | VLLMBackendConfig) -> bool:
    """Whether the recipe's backend constrains output to a request's JSON schema (prompts then ask for JSON)."""
    return backend.structured_output not in (False, "none")


BACKEND_KINDS: dict[str, type[_Strict]] = {
    "llamacpp": LlamaCppBackendConfig, "openai": OpenAIBackendConfig, "vllm": VLLMBackendConfig,
}
BackendConfig = Annotated[LlamaCppBackendConfig | OpenAIBackendConfig | VLLMBackendConfig, Field(discriminator="kind")]


class SamplingConfig(_Strict):
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(400, ge=1, le=32768)
    # SmolLM2-135M loops ("she hopped again and hopped again") at 1.0.
    repeat_penalty: float = Field(1.15, ge=1.0, le=2.0)
    stop: tuple[str, ...] = ()


# --- stages -------------------------------------------------------------------


def check_budget(count: int, target: int | None, max_candidates: int | None) -> None:
    if max_candidates is not None and target is None:
        raise ValueError("max_candidates is the budget of a target: set target too")
    if max_candidates is not None and max_candidates < count:
        raise ValueError(f"max_candidates ({max_candidates}) is smaller than count ({count}), the first round")


class TinyStoriesGenerateConfig(_Strict):
    count: int = Field(..., gt=0, le=10_000_000, description="stories to generate")
    batch_size: int = Field(16, gt=0, le=100_000, description="stories per Prefect task")
    vocab_dir: Path = Field(VOCAB_DIR, description="folder with nouns.txt, verbs.txt, adjectives.txt")
    features: tuple[Feature, ...] = STORY_FEATURES
    min_features: int = Field(0, ge=0, le=len(STORY_FEATURES))
    max_features: int = Field(3, ge=0, le=len(STORY_FEATURES))
    summary_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of stories that also get a one-sentence summary"
    )
    target: int | None = Field(None, gt=0, le=10_000_000, description="publish exactly this many records: "
                               "generate in rounds (the first of `count` candidates) until they survive")
    max_candidates: int | None = Field(None, gt=0, le=100_000_000,
                                       description="with target: candidates at most, in all rounds (default 20 x target)")
    exemplars: int = Field(2, ge=0, le=8, description="example stories shown as earlier chat turns (0: none)")
    sentence_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of stories asked to contain a "
                                     "given sentence (TinyStories-Instruct); the filter checks that it is there")
    sentences_path: Path = Field(STORY_SENTENCES_FILE, description="the sentences drawn from: one per line, "
                                 "# comments")
    exemplars_path: Path = Field(STORY_EXEMPLARS_FILE, description="JSONL of example stories (id, words, "
                                 "features, story)")

    @model_validator(mode="after")
    def _feature_bounds(self) -> TinyStoriesGenerateConfig:
        check_budget(self.count, self.target, self.max_candidates)
        if self.min_features > self.max_features:
            raise ValueError(
                f"min_features ({self.min_features}) is larger than max_features ({self.max_features})"
            )
        if self.max_features > len(set(self.features)):
            raise ValueError(
                f"max_features ({self.max_features}) is larger than the {len(set(self.features))} features listed"
            )
        return self


class StoryFilterConfig(_Strict):
    min_words: int = Field(40, ge=1)
    max_words: int = Field(600, ge=1)
    min_required_words: int = Field(
        3, ge=0, le=3, description="how many of the prompt's verb, noun and adjective must appear (0: no check)"
    )
    repeated_ngram_size: int = Field(3, ge=1, le=10)
    max_repeated_ngram_fraction: float = Field(0.25, ge=0.0, le=1.0)
    max_oov_fraction: float = Field(0.2, ge=0.0, le=1.0)
    max_non_ascii_fraction: float = Field(0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> StoryFilterConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is larger than max_words ({self.max_words})")
        return self


class DedupConfig(_Strict):
    enabled: bool = True
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity of word n-gram sets")
    num_perm: int = Field(128, ge=16, le=1024)
    ngram: int = Field(5, ge=1, le=32, description="words per shingle")
    keep: Literal["first", "longest", "score"] = Field(
        "first", description="which record of a cluster is kept: first seen, longest, or highest score "
        "(tinygsm: answer agreement)")
    cross_build: bool = Field(True, description="drop records that other builds under output_root published")


class PublishConfig(_Strict):
    shard_max_rows: int = Field(100_000, gt=0)
    shard_max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="uncompressed bytes per shard")
    row_group_rows: int = Field(1024, gt=0)
    validation_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    compression_level: int = Field(3, ge=1, le=22)
    tokenizer: str | None = Field(None, description="also write an input_ids column, tokenized with this "
                                  "model's tokenizer: 'smollm2-135m-instruct' (shipped) or a .gguf path")
    append_eos: bool = Field(True, description="end every input_ids with the tokenizer's EOS token")

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer(cls, v: str | None) -> str | None:
        from pipeline.llm.llamacpp import SHIPPED_MODELS

        if v is not None and v not in SHIPPED_MODELS and not v.endswith(".gguf"):
            raise ValueError(f"{v!r} is neither a shipped model ({', '.join(SHIPPED_MODELS)}) nor a .gguf file")
        return v


class DifficultyConfig(_Strict):
    """Proxy-model difficulty scores (see docs/difficulty.md)."""

    enabled: bool = True
    epochs: int = Field(3, ge=1, le=100)
    checkpoints_per_epoch: int = Field(2, ge=1, le=100, description="loss snapshots per epoch (trajectory points)")
    vocab_size: int = Field(2048, ge=300, le=65536, description="BPE vocabulary trained on the records")
    d_model: int = Field(128, ge=16, le=4096)
    n_layers: int = Field(4, ge=1, le=64)
    n_heads: int = Field(4, ge=1, le=64)
    seq_len: int = Field(256, ge=16, le=8192)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0.0, le=1.0)
    warmup: float = Field(0.03, ge=0.0, lt=1.0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    s2l_clusters: int = Field(8, ge=1, le=10_000)
    s2l_budget: float = Field(0.5, gt=0.0, le=1.0, description="share of records the S2L subset keeps")
    ifd: bool = Field(True, description="IFD / IC-IFD with a pretrained small model")
    ifd_model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    sample: int | None = Field(
        None, ge=100, le=100_000_000, description="score a random sample of this many records, drawn with the "
        "recipe's seed; the others get null scores (default: every record; on 2 CPU cores the proxy costs "
        "35 ms a short record and about 230 ms of one core a story: docs/difficulty.md)")

    @model_validator(mode="after")
    def _heads(self) -> DifficultyConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        return self


class FluencyConfig(_Strict):
    """The fluency score: a small pretrained model's mean token loss on each record's text (see docs/judge.md)."""

    enabled: bool = True
    model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    max_loss: float | None = Field(
        None, gt=0.0, description="reject records whose mean token loss is above this, as `disfluent` "
        "(default: score only)")


class JudgeConfig(_Strict):
    """An LLM judge grades every record on its kind's rubric (``pipeline.rubrics``; see docs/judge.md).

    Off by default: the embedded 135M model is no judge. Point ``[judge.backend]`` at a bigger model than
    the generator; without it the judge is the recipe's own backend."""

    enabled: bool = False
    backend: BackendConfig | None = Field(None, description="the judge's model (default: the recipe's backend)")
    sampling: SamplingConfig = SamplingConfig(temperature=0.0, max_tokens=96, repeat_penalty=1.0)
    min: dict[str, int] = Field(default_factory=dict, description="criterion -> lowest score kept, e.g. "
                                "{consistency = 6}; below it a record is rejected as judge:<criterion>")
    retries: int = Field(2, ge=0, le=5, description="times an unreadable verdict is asked for again, with what "
                         "was wrong; after that the record keeps no scores and the reason, never a guess")
    max_chars: int = Field(4000, ge=200, le=200_000, description="a longer text is cut before the judge reads it")

    @field_validator("backend", mode="before")
    @classmethod
    def _default_kind(cls, v: Any) -> Any:
        return {"kind": "llamacpp", **v} if isinstance(v, dict) and "kind" not in v else v

    @field_validator("min")
    @classmethod
    def _scores(cls, v: dict[str, int]) -> dict[str, int]:
        if bad := [k for k, x in v.items() if not 1 <= x <= 10]:
            raise ValueError(f"a threshold is a score from 1 to 10 ({bad[0]} = {v[bad[0]]})")
        return v


class ScheduleConfig(_Strict):
    """When `tinyforge serve` runs the recipe on its own (see docs/operations.md)."""

    cron: str = Field(..., description='e.g. "0 3 * * *" for 03:00 every night')
    timezone: str = Field("UTC", description="IANA name, e.g. Europe/Berlin")
    dated: bool = Field(True, description="each scheduled run builds <name>-<YYYY-MM-DD> with a seed of its own, "
                        "so nights add new records instead of rebuilding the same ones")
    wait_for_lock: float = Field(3600.0, ge=0.0, description="seconds a run waits for another run of the same "
                                 "build directory before it fails")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from prefect.schedules import validate_cron_string

        return validate_cron_string(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class StorageConfig(_Strict):
    """Where builds are shared beyond this machine: any fsspec URL (s3://, gs://, az://, file://, memory://)."""

    publish_to: str | None = Field(None, description="copy every published dataset to <publish_to>/<build name>/ "
                                   "(manifest last, so a reader never sees half a copy)")
    cache_url: str | None = Field(None, description="a response cache shared between machines: each run reads "
                                  "the completions there first and adds the ones it made")
    options: dict[str, Any] = Field(default_factory=dict, description="fsspec storage options (endpoint, "
                                    "profile...); keep credentials in the environment, not in the recipe")

    @field_validator("publish_to", "cache_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import fsspec

        protocol = v.split("://", 1)[0] if "://" in v else "file"
        if protocol not in fsspec.available_protocols():
            raise ValueError(f"{v!r}: unknown fsspec protocol {protocol!r}")
        return v.rstrip("/")


class CostConfig(_Strict):
    """Prices for the usage table of the report; the embedded model costs nothing but time."""

    prompt_per_million: float = Field(0.0, ge=0.0, description="price of a million prompt tokens")
    completion_per_million: float = Field(0.0, ge=0.0, description="price of a million completion tokens")
    currency: str = "USD"

    def of(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_million + completion_tokens * self.completion_per_million) / 1e6


# --- recipes ------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class EvalSetConfig(_Strict):
    path: Path
    field: str = Field("question", description="the text field of a JSONL or Parquet file (a .txt file: its lines)")


class DecontaminateConfig(_Strict):
    """Records sharing a long n-gram with, or near-duplicating, a text of the evaluation files named here
    are dropped (every kind; see docs/decontamination.md)."""

    ngram: int = Field(13, ge=3, le=64, description="words per n-gram (after removing punctuation and numbers)")
    near_duplicates: bool = Field(True, description="also drop MinHash near-duplicates of eval texts")
    near_duplicate_threshold: float = Field(0.8, gt=0.0, lt=1.0)
    eval_sets: tuple[EvalSetConfig, ...] = ()


class BaseRecipe(_Strict):
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

    @field_validator("backend", mode="before")
    @classmethod
    def _default_kind(cls, v: Any) -> Any:
        if isinstance(v, dict) and "kind" not in v:  # `[backend]` with only `n_threads = 2` means the default
            return {"kind": "llamacpp", **v}
        return v

    @model_validator(mode="after")
    def _judge_criteria(self) -> BaseRecipe:
        if self.judge.enabled or self.judge.min:
            from pipeline.kinds import get_kind  # at validation time: the kinds module imports this one

            rubric = get_kind(self.kind).rubric
            if rubric is None:
                raise ValueError(f"judge: the {self.kind} kind has no judge rubric")
            if unknown := [k for k in self.judge.min if k not in rubric.numeric]:
                raise ValueError(f"judge.min: no criterion {unknown[0]!r} in the {self.kind} rubric "
                                 f"({', '.join(rubric.numeric)})")
        return self

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
        payload["decontaminate"]["eval_sets"] = [
            {"file": files_digest([e.path]), "field": e.field} for e in self.decontaminate.eval_sets
        ]
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        """Updates that make the recipe's relative paths absolute (``resolve(path) -> path``); a kind adds
        its own to these."""
        sets = tuple(e.model_copy(update={"path": resolve(e.path)}) for e in self.decontaminate.eval_sets)
        return {"decontaminate": self.decontaminate.model_copy(update={"eval_sets": sets})}

    def check_files(self, source: str) -> None:
        """Raise RecipeError for an input file the recipe names that does not exist (a kind checks its own
        files after these)."""
        if self.output_root.exists() and not self.output_root.is_dir():
            raise RecipeError(f"{source}: output_root: {self.output_root} is a file, not a folder")
        for i, e in enumerate(self.decontaminate.eval_sets):
            if not e.path.is_file():
                raise RecipeError(f"{source}: decontaminate.eval_sets.{i}.path: no such file {e.path}")
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


class TinyStoriesRecipe(BaseRecipe):
    kind: Literal["tinystories"] = "tinystories"
    generate: TinyStoriesGenerateConfig
    filter: StoryFilterConfig = StoryFilterConfig()

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = super().fingerprint_payload()
        payload["generate"]["vocab_dir"] = files_digest(self.generate.vocab_dir / n for n in VOCAB_FILES)
        payload["generate"]["exemplars_path"] = files_digest([self.generate.exemplars_path])
        payload["generate"]["sentences_path"] = files_digest([self.generate.sentences_path])
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        g = self.generate
        return {**super().resolve_paths(resolve), "generate": g.model_copy(update={"vocab_dir": resolve(g.vocab_dir),
                                                 "exemplars_path": resolve(g.exemplars_path),
                                                 "sentences_path": resolve(g.sentences_path)})}

    def check_files(self, source: str) -> None:
        super().check_files(source)
        for name in VOCAB_FILES:
            _has_lines(self.generate.vocab_dir / name, f"{source}: generate.vocab_dir", "vocabulary file", "missing")
        if self.generate.exemplars and not self.generate.exemplars_path.is_file():
            raise RecipeError(f"{source}: generate.exemplars_path: no such file {self.generate.exemplars_path}")
        if self.generate.sentence_fraction:
            _has_lines(self.generate.sentences_path, f"{source}: generate.sentences_path", "file")


def _has_lines(path: Path, where: str, what: str, absent: str = "no such") -> None:
    """RecipeError unless ``path`` is a UTF-8 text file with a line that is not blank or a comment."""
    if not path.is_file():
        raise RecipeError(f"{where}: {absent} {what} {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RecipeError(f"{where}: {path} is not UTF-8 text") from None
    if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
        raise RecipeError(f"{where}: {path} is empty")


# --- tinygsm ------------------------------------------------------------------


class SeedsConfig(_Strict):
    """Seed problems: the shipped pool, or the user's own JSONL (e.g. GSM8K train)."""

    path: Path = Field(SEEDS_FILE, description="JSONL file, one seed problem per line")
    question_field: str = "question"
    answer_field: str | None = Field("answer", description='numeric, or GSM8K style "... #### 42"; optional')
    solution_field: str | None = Field("solution", description="a worked Python solution, used as the example")
    limit: int | None = Field(None, gt=0, description="use only the first N seeds")


class TinyGSMGenerateConfig(_Strict):
    count: int = Field(..., gt=0, le=10_000_000, description="problems to write (before verification)")
    batch_size: int = Field(8, gt=0, le=100_000, description="problems per Prefect task")
    samples: int = Field(4, ge=1, le=64, description="independent solutions sampled per problem (k)")
    target: int | None = Field(None, gt=0, le=10_000_000, description="publish exactly this many records: "
                               "generate in rounds (the first of `count` candidates) until they survive")
    max_candidates: int | None = Field(None, gt=0, le=100_000_000,
                                       description="with target: candidates at most, in all rounds (default 20 x target)")
    exemplars: int = Field(2, ge=0, le=8, description="example rewrites (problem -> new problem) shown as earlier "
                           "chat turns, drawn per problem (0: none)")
    exemplars_path: Path = Field(REWRITE_EXEMPLARS_FILE, description="JSONL of example rewrites (id, question, "
                                 "rewrite, solution, answer)")

    @model_validator(mode="after")
    def _budget(self) -> TinyGSMGenerateConfig:
        check_budget(self.count, self.target, self.max_candidates)
        return self


class QuestionFilterConfig(_Strict):
    min_words: int = Field(12, ge=1)
    max_words: int = Field(200, ge=1)
    min_numbers: int = Field(2, ge=0, description="numbers a problem must state")
    require_question: bool = Field(True, description="the problem must ask something (end with '?')")

    @model_validator(mode="after")
    def _bounds(self) -> QuestionFilterConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is larger than max_words ({self.max_words})")
        return self


class VerifyConfig(_Strict):
    min_agreement: float = Field(
        0.5, gt=0.0, le=1.0, description="share of the k samples that must reach the majority answer"
    )
    votes: Literal["distinct", "samples"] = Field(
        "distinct", description="what a vote is: a distinct program (after normalising names, spacing and "
                                "comments) or every sample")
    min_votes: int = Field(1, ge=1, le=64, description="distinct programs that must reach the majority answer")
    timeout_s: float = Field(2.0, gt=0.0, le=60.0, description="CPU seconds a program may use, all its processes "
                                                                 "together (a sleeping one stops at 2x + 1 s of wall clock)")
    memory_mb: int = Field(512, ge=64, le=16384, description="memory a program may use: per process, and all its "
                                                              "processes together where the host has a memory cgroup")
    workers: int = Field(2, ge=1, le=256)


class CalibrateConfig(_Strict):
    """Problems with known answers, solved by the build's own solver: how often its verification is right."""

    enabled: bool = True
    path: Path = Field(SEEDS_FILE, description="JSONL with a question and a numeric or GSM8K-style answer")
    question_field: str = "question"
    answer_field: str = "answer"
    limit: int | None = Field(120, gt=0, description="calibrate on the first N problems with an answer")


class ProspectConfig(_Strict):
    """One-shot prospecting (docs/difficulty.md#one-shot-prospecting): how much each record helps the
    embedded model as the one example before a fixed task set."""

    enabled: bool = False
    model: str = Field("smollm2-135m-instruct", description="a shipped model name or a .gguf path")
    tasks: Path = Field(PROSPECT_TASKS_FILE, description="the task set, JSON lines of instruction and response "
                        "(default: 12 shipped original tasks)")
    sample: int | None = Field(None, ge=1, le=100_000_000, description="score a random sample of this many "
                               "records, drawn with the recipe's seed (the same as [difficulty] sample's for "
                               "the same size); the others get null (default: every record)")


class ProspectingRecipe(BaseRecipe):
    """A recipe whose records are instructions with responses, which one-shot prospecting can score."""

    prospect: ProspectConfig = ProspectConfig()

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = super().fingerprint_payload()
        payload["prospect"]["tasks"] = files_digest([self.prospect.tasks])
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        return {**super().resolve_paths(resolve),
                "prospect": self.prospect.model_copy(update={"tasks": resolve(self.prospect.tasks)})}

    def check_files(self, source: str) -> None:
        super().check_files(source)
        if self.prospect.enabled and not self.prospect.tasks.is_file():
            raise RecipeError(f"{source}: prospect.tasks: no such file {self.prospect.tasks}")


class TinyGSMRecipe(ProspectingRecipe):
    kind: Literal["tinygsm"] = "tinygsm"
    generate: TinyGSMGenerateConfig
    seeds: SeedsConfig = SeedsConfig()
    sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=160, repeat_penalty=1.1)
    solution_sampling: SamplingConfig = SamplingConfig(temperature=0.5, max_tokens=320, repeat_penalty=1.05)
    filter: QuestionFilterConfig = QuestionFilterConfig()
    verify: VerifyConfig = VerifyConfig()
    calibrate: CalibrateConfig = CalibrateConfig()

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = super().fingerprint_payload()
        payload["seeds"]["path"] = files_digest([self.seeds.path])
        payload["calibrate"]["path"] = files_digest([self.calibrate.path])
        payload["generate"]["exemplars_path"] = files_digest([self.generate.exemplars_path])
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        return {**super().resolve_paths(resolve), "seeds": self.seeds.model_copy(update={"path": resolve(self.seeds.path)}),
                "calibrate": self.calibrate.model_copy(update={"path": resolve(self.calibrate.path)}),
                "generate": self.generate.model_copy(update={"exemplars_path": resolve(self.generate.exemplars_path)})}

    def check_files(self, source: str) -> None:
        super().check_files(source)
        if not self.seeds.path.is_file():
            raise RecipeError(f"{source}: seeds.path: no such seed file {self.seeds.path}")
        if self.generate.exemplars and not self.generate.exemplars_path.is_file():
            raise RecipeError(f"{source}: generate.exemplars_path: no such file {self.generate.exemplars_path}")
        if self.calibrate.enabled and not self.calibrate.path.is_file():
            raise RecipeError(f"{source}: calibrate.path: no such file {self.calibrate.path}")


# --- evol-instruct ------------------------------------------------------------

EvolOperation = Literal["add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth"]
EVOL_OPERATIONS: tuple[EvolOperation, ...] = (
    "add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth")


class EvolSeedsConfig(_Strict):
    """Where the instructions to evolve come from."""

    path: Path = Field(INSTRUCTIONS_FILE, description="a JSONL file, or an earlier build's dataset/ folder")
    field: str | None = Field(None, description="the text field (default: instruction, question or prompt)")
    math: bool | None = Field(
        None, description="math problems: every evolution must stay solvable (default: a tinygsm dataset, "
        "or seeds that all carry an answer)")
    limit: int | None = Field(None, gt=0, description="use only the first N seeds")


class EvolveConfig(_Strict):
    rounds: int = Field(4, ge=1, le=20, description="each round evolves the survivors of the one before")
    operations: tuple[EvolOperation, ...] = Field(
        EVOL_OPERATIONS, min_length=1, description="the operation mix; list one twice to use it twice as often")
    assignment: Literal["round_robin", "random"] = Field(
        "round_robin", description="round_robin: an instruction's operation shifts every round; random: drawn "
        "from the mix")
    batch_size: int = Field(32, gt=0, le=100_000, description="instructions per Prefect task")
    target: int | None = Field(None, gt=0, le=10_000_000, description="publish exactly this many evolved "
                               "instructions: more seeds (seeds.limit) each round of the build until they survive")
    max_seeds: int | None = Field(None, gt=0, le=100_000_000, description="the budget of a target: seeds "
                                  "evolved in all rounds at most (default 20 x target, or the pool's size)")
    retry_failed: bool = Field(True, description="a failed evolution's parent goes back into the next round's pool")
    judge: bool = Field(False, description="also ask the evolver whether child and parent are Equal (paper's judge)")
    exemplars: int = Field(2, ge=0, le=8, description="example evolutions shown as earlier chat turns (0: none)")
    exemplars_path: Path = Field(EVOLUTION_EXEMPLARS_FILE, description="JSONL of example evolutions (id, "
                                 "operation, math, parent, child)")
    min_words: int = Field(4, ge=1)
    max_words: int = Field(200, ge=1)
    max_growth: float = Field(3.0, gt=1.0, le=100.0, description="in-depth: child words / parent words at most")
    max_similarity: float = Field(
        0.9, gt=0.0, le=1.0, description="word-set Jaccard with the parent at or above which nothing was gained")
    max_template_overlap: float = Field(
        0.3, ge=0.0, le=1.0, description="share of new 4-grams taken from the evolving prompt above which "
        "the model copied the prompt")

    @model_validator(mode="after")
    def _bounds(self) -> EvolveConfig:
        if self.max_seeds is not None and self.target is None:
            raise ValueError("max_seeds is the budget of a target: set target too")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is larger than max_words ({self.max_words})")
        return self


class EvolResponseConfig(_Strict):
    min_words: int = Field(3, ge=1, description="a shorter response is degenerate")
    allow_truncated: bool = Field(False, description="keep responses cut off at max_tokens")


class EvolMathConfig(_Strict):
    """The solvability gate for math pools: k sampled solutions must run and agree."""

    samples: int = Field(4, ge=1, le=64)
    solution_sampling: SamplingConfig = SamplingConfig(temperature=0.5, max_tokens=320, repeat_penalty=1.05)
    filter: QuestionFilterConfig = QuestionFilterConfig()
    verify: VerifyConfig = VerifyConfig()


class EvolInstructRecipe(ProspectingRecipe):
    kind: Literal["evol_instruct"] = "evol_instruct"
    seeds: EvolSeedsConfig = EvolSeedsConfig()
    evolve: EvolveConfig = EvolveConfig()
    sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=200, repeat_penalty=1.1)
    response_backend: BackendConfig | None = Field(None, description="default: the evolver's backend")
    response_sampling: SamplingConfig = SamplingConfig(temperature=0.7, max_tokens=300, repeat_penalty=1.15)
    response: EvolResponseConfig = EvolResponseConfig()
    math: EvolMathConfig = EvolMathConfig()
    calibrate: CalibrateConfig = Field(
        CalibrateConfig(), description="math pools: the solvability gate's solver on problems with known answers")

    _default_response_kind = field_validator("response_backend", mode="before")(BaseRecipe._default_kind.__func__)

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = super().fingerprint_payload()
        p = self.seeds.path
        payload["seeds"]["path"] = files_digest([p / "manifest.json"] if p.is_dir() else [p])
        payload["calibrate"]["path"] = files_digest([self.calibrate.path])
        payload["evolve"]["exemplars_path"] = files_digest([self.evolve.exemplars_path])
        return payload

    def resolve_paths(self, resolve: Any) -> dict[str, Any]:
        return {**super().resolve_paths(resolve), "seeds": self.seeds.model_copy(update={"path": resolve(self.seeds.path)}),
                "calibrate": self.calibrate.model_copy(update={"path": resolve(self.calibrate.path)}),
                "evolve": self.evolve.model_copy(update={"exemplars_path": resolve(self.evolve.exemplars_path)})}

    def check_files(self, source: str) -> None:
        super().check_files(source)
        p = self.seeds.path
        if not (p.is_file() or (p / "manifest.json").is_file()):
            raise RecipeError(f"{source}: seeds.path: no such seed file or published dataset {p}")
        if self.calibrate.enabled and not self.calibrate.path.is_file():
            raise RecipeError(f"{source}: calibrate.path: no such file {self.calibrate.path}")
        if self.evolve.exemplars and not self.evolve.exemplars_path.is_file():
            raise RecipeError(f"{source}: evolve.exemplars_path: no such file {self.evolve.exemplars_path}")

    @property
    def responder(self) -> LlamaCppBackendConfig | OpenAIBackendConfig | VLLMBackendConfig:
        return self.response_backend or self.backend


class MixSource(_Strict):
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


class MixConfig(_Strict):
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


RECIPE_KINDS: dict[str, type[BaseRecipe]] = {
    "tinystories": TinyStoriesRecipe, "tinygsm": TinyGSMRecipe, "evol_instruct": EvolInstructRecipe,
    "mix": MixRecipe}
Recipe = TinyStoriesRecipe | TinyGSMRecipe | EvolInstructRecipe | MixRecipe


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
        raise RecipeError(f"{source}: kind: missing (one of {', '.join(RECIPE_KINDS)})")
    if not isinstance(kind, str) or kind not in RECIPE_KINDS:
        raise RecipeError(f"{source}: kind: unknown recipe kind {kind!r} (one of {', '.join(RECIPE_KINDS)})")
    backend = raw.get("backend")
    backend_kind = backend.get("kind", "llamacpp") if isinstance(backend, dict) else None
    if isinstance(backend, dict) and (not isinstance(backend_kind, str) or backend_kind not in BACKEND_KINDS):
        raise RecipeError(
            f"{source}: backend.kind: unknown backend {backend['kind']!r} (one of {', '.join(BACKEND_KINDS)})"
        )
    try:
        recipe = RECIPE_KINDS[kind].model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(f"{source}: {_one_line(exc)}") from None
    if base_dir is not None:
        recipe = _resolve_paths(recipe, base_dir)
    recipe.check_files(source)
    return recipe


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

    return recipe.model_copy(update={"output_root": resolve(recipe.output_root), **recipe.resolve_paths(resolve)})
