"""LLM backends behind one interface, and the response cache that fronts them all."""

from __future__ import annotations

import threading
from pathlib import Path

from pipeline.llm.cache import CachedBackend, ResponseCache
from pipeline.llm.types import Backend, ChatRequest, Completion, Message, SamplingParams, sample_seed
from pipeline.llm.config import BackendConfig, SamplingConfig

__all__ = [
    "Backend", "CachedBackend", "ChatRequest", "Completion", "Message", "ResponseCache", "SamplingParams",
    "load_backend", "sampling_params", "sample_seed",
]

_BACKENDS: dict[BackendConfig, Backend] = {}
_LOCK = threading.Lock()


def load_backend(config: BackendConfig) -> Backend:
    """The backend a recipe names, loaded once per process and reused by every task."""
    with _LOCK:
        if config not in _BACKENDS:
            _BACKENDS[config] = _make(config)
        return _BACKENDS[config]


def _make(config: BackendConfig) -> Backend:
    if config.kind == "llamacpp":
        from pipeline.llm.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine(config.model, n_ctx=config.n_ctx, n_threads=config.n_threads, parallel=config.parallel,
                              engines=config.engines, weights=config.weights,
                              structured_output=config.structured_output)
    if config.kind == "openai":
        from pipeline.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if config.kind == "vllm":
        from pipeline.llm.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    raise ValueError(f"unknown backend {config.kind!r}")  # pragma: no cover - recipes admit known kinds


def sampling_params(config: SamplingConfig) -> SamplingParams:
    return SamplingParams(
        temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
        repeat_penalty=config.repeat_penalty, stop=tuple(config.stop),
    )


def cache_path(output_root: Path) -> Path:
    return output_root / "cache" / "responses.sqlite"
