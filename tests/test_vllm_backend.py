"""The vllm backend, on a GPU machine with vLLM and a local model; skipped (with the reason) elsewhere."""

from __future__ import annotations

import json
import os

import pytest

vllm = pytest.importorskip("vllm", reason="vLLM is not installed: it needs a CUDA GPU (pip install -e '.[gpu]')")
MODEL = os.environ.get("TINYFORGE_VLLM_MODEL")
pytestmark = pytest.mark.skipif(not MODEL, reason="set TINYFORGE_VLLM_MODEL to a local Hugging Face model directory")


def test_vllm_generates_seeded_samples_and_structured_json() -> None:
    from pipeline.llm import ChatRequest, Message, SamplingParams
    from pipeline.llm.vllm_backend import VLLMBackend
    from pipeline.llm.config import VLLMBackendConfig

    backend = VLLMBackend(VLLMBackendConfig(model=MODEL, gpu_memory_utilization=0.5, max_model_len=2048))
    params = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=32)
    req = ChatRequest((Message("user", "Name a fruit."),), params, seed=1, n=2)
    (first,) = backend.generate([req])
    (again,) = backend.generate([req])
    assert [c.text for c in first] == [c.text for c in again] and all(c.completion_tokens > 0 for c in first)
    schema = {"type": "object", "properties": {"fruit": {"type": "string"}}, "required": ["fruit"]}
    (structured,) = backend.generate([ChatRequest((Message("user", "Name a fruit as JSON."),), params, seed=2,
                                                  json_schema=schema)])
    assert "fruit" in json.loads(structured[0].text)
