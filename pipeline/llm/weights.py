"""Which weights file the CPU engine loads: the GGUF as shipped, or its float16 re-encoding.

llama.cpp's CPU kernels are not equally fast for every storage type. For the
shipped SmolLM2-135M (Q4_1), on the project's 2-core machines, one thread
evaluates prompts at about 150 tokens/s from Q4_1 and about 340 tokens/s from
float16, and decodes a batch of 16 sequences at about 105 vs 155 tokens/s
(docs/benchmarks.md). A Q4_1 weight is ``d * q + m`` with float16 ``d`` and
``m``: float16 holds it to within float16 rounding, so the re-encoding is the
same model (measured perplexity on the shipped seed problems: 15.86 from Q4_1,
15.81 from float16; a Q4_0 requantization, also fast, costs 16%: 18.40).

Float16 doubles a 4-bit file's size, which only pays off while the model is
small: ``weights = "auto"`` re-encodes models of at most ``AUTO_F16_MAX_BYTES``
of float16 and loads larger ones as they are. The copy is made once, with
llama.cpp's own ``llama_model_quantize``, and kept in a cache folder keyed by
the source file's hash.
"""

from __future__ import annotations

import ctypes
import os
import uuid
from pathlib import Path
from typing import Literal

from pipeline.fingerprint import file_sha256
from pipeline.llm.llamacpp import lowlevel

Weights = Literal["auto", "f16", "file"]
AUTO_F16_MAX_BYTES = 1 << 30  # models up to ~500M parameters
_FLOAT_FILE_TYPES = {0, 1, 32}  # LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_BF16: nothing to gain


def cache_dir() -> Path:
    """Where re-encoded weights live: ``$TINYFORGE_MODEL_CACHE``, else ``~/.cache/tinyforge/models``."""
    if path := os.environ.get("TINYFORGE_MODEL_CACHE"):
        return Path(path).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "tinyforge" / "models"


def _file_info(path: Path) -> tuple[int, int]:
    """(llama.cpp file type, parameter count), reading only the GGUF header and tensor table."""
    L = lowlevel()
    params = L.llama_model_default_params()
    params.use_mmap = True  # nothing is read beyond what these two questions need
    model = L.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {path}")
    try:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        file_type = int(buf.value) if n > 0 else -1
        return file_type, int(L.llama_model_n_params(model))
    finally:
        L.llama_model_free(model)


def f16_copy(path: Path) -> Path:
    """The float16 re-encoding of ``path``, made once and cached."""
    L = lowlevel()
    target = cache_dir() / f"{path.stem}.{file_sha256(path)[:16]}.f16.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    params = L.llama_model_quantize_default_params()
    params.ftype = L.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    try:
        if L.llama_model_quantize(str(path).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
            raise RuntimeError(f"llama.cpp could not re-encode {path} as float16")
        os.replace(tmp, target)  # a half-written copy is never loaded
    finally:
        tmp.unlink(missing_ok=True)
    return target


def engine_weights(path: Path, weights: Weights = "auto") -> Path:
    """The file the engine should load for the model at ``path``."""
    if weights == "file":
        return path
    file_type, n_params = _file_info(path)
    if file_type in _FLOAT_FILE_TYPES:
        return path
    if weights == "auto" and 2 * n_params > AUTO_F16_MAX_BYTES:
        return path  # a large model: float16 would cost more memory traffic than its kernels save
    return f16_copy(path)
