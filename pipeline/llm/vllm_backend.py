"""The `vllm` backend: vLLM's in-process engine for offline batch generation on GPUs.

Written against vLLM's current API (``LLM.chat`` with one ``SamplingParams``
per conversation; structured outputs through ``StructuredOutputsParams``,
which replaced the removed ``guided_*`` options in v0.12). Install with
``pip install -e '.[gpu]'`` on a machine with a CUDA GPU. Where vLLM is not
installed its tests are skipped with that reason.

Each sample is its own conversation seeded with ``sample_seed(seed, i)``, so
samples line up with the response cache exactly as with the other backends;
vLLM batches them all internally (continuous batching).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import UserError
from pipeline.llm.types import ChatRequest, Completion, OnDone, sample_seed
from pipeline.llm.config import VLLMBackendConfig


class VLLMBackend:
    def __init__(self, config: VLLMBackendConfig):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("backend.kind = 'vllm' needs vLLM and a GPU: pip install -e '.[gpu]' "
                            "(or run `vllm serve` and use backend.kind = 'openai')") from None
        self.config = config
        kwargs = {"tensor_parallel_size": config.tensor_parallel_size,
                  "gpu_memory_utilization": config.gpu_memory_utilization, "max_num_seqs": config.max_num_seqs,
                  "dtype": config.dtype}
        if config.max_model_len:
            kwargs["max_model_len"] = config.max_model_len
        self._llm = LLM(model=config.model, **kwargs)
        self._model_id = f"vllm/{config.model}"

    @property
    def model_id(self) -> str:
        return self._model_id

    def _params(self, request: ChatRequest, sample: int):
        from vllm import SamplingParams

        p = request.params
        extra = {}
        if self.config.structured_output and request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        return SamplingParams(n=1, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                              repetition_penalty=p.repeat_penalty, stop=list(p.stop) or None,
                              seed=sample_seed(request.seed, sample), **extra)

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        jobs = [(ri, s) for ri, r in enumerate(requests) for s in r.sample_indices]
        conversations = [[{"role": m.role, "content": m.content} for m in requests[ri].messages] for ri, _ in jobs]
        params = [self._params(requests[ri], s) for ri, s in jobs]
        outputs = self._llm.chat(conversations, sampling_params=params, use_tqdm=False)
        results: list[list[Completion]] = [[] for _ in requests]
        for (ri, _), out in zip(jobs, outputs, strict=True):
            o = out.outputs[0]
            results[ri].append(Completion(o.text, o.finish_reason or "stop", len(out.prompt_token_ids or []),
                                          len(o.token_ids)))
        if on_done:
            for ri, completions in enumerate(results):
                on_done(ri, completions)
        return results
