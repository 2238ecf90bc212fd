"""What a recipe says about its model: the backend (``[backend]``, one of three kinds) and ``[sampling]``."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from pipeline.config import Section


class LlamaCppBackendConfig(Section):
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


class OpenAIBackendConfig(Section):
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


class VLLMBackendConfig(Section):
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


BACKEND_KINDS: dict[str, type[Section]] = {
    "llamacpp": LlamaCppBackendConfig, "openai": OpenAIBackendConfig, "vllm": VLLMBackendConfig,
}


BackendConfig = Annotated[LlamaCppBackendConfig | OpenAIBackendConfig | VLLMBackendConfig, Field(discriminator="kind")]


class SamplingConfig(Section):
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(400, ge=1, le=32768)
    # SmolLM2-135M loops ("she hopped again and hopped again") at 1.0.
    repeat_penalty: float = Field(1.15, ge=1.0, le=2.0)
    stop: tuple[str, ...] = ()


def default_backend_kind(value: Any) -> Any:
    """``[backend]`` without ``kind`` (only ``n_threads = 2``, say) means the embedded default's."""
    return {"kind": "llamacpp", **value} if isinstance(value, dict) and "kind" not in value else value
