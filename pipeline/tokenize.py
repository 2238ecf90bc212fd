"""Pre-tokenized ``input_ids`` for the shards: trainers skip their own tokenization pass.

The tokenizer is read from a GGUF file with llama.cpp's ``vocab_only`` mode
(no weights loaded): the shipped SmolLM2-135M's by default, so the ids match
the embedded generator's vocabulary, or any ``.gguf`` path for another
model's. :meth:`Tokenizer.encode_arrow` calls llama.cpp's tokenizer into one
reused buffer and returns an Arrow list column: llama-cpp-python's own
``tokenize`` allocates and zeroes a context-sized array per text (32 KB for
SmolLM2), which was most of a publish's CPU, and a million Python int lists
would be gigabytes.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa

from pipeline.errors import UserError


@dataclass(frozen=True)
class Tokenizer:
    name: str
    vocab_size: int
    eos_id: int
    _llama: Any

    def encode(self, texts: Sequence[str], *, append_eos: bool = True) -> list[list[int]]:
        """Token ids of each text, no BOS; EOS appended so packed sequences keep their boundaries."""
        return self.encode_arrow(texts, append_eos=append_eos).to_pylist()

    def encode_arrow(self, texts: Iterable[str], *, append_eos: bool = True) -> pa.ListArray:
        """:meth:`encode` as an Arrow ``list<int32>`` array, without a Python list per text."""
        import llama_cpp

        vocab = self._llama._model.vocab
        size = 4096
        buf = (llama_cpp.llama_token * size)()
        values, offsets = array("i"), array("i", [0])
        for text in texts:
            raw = text.encode("utf-8")
            if len(raw) + 1 > size:  # a token covers at least one byte
                size = 2 * (len(raw) + 1)
                buf = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, size, False, False)
            if n < 0:
                raise RuntimeError(f"llama.cpp could not tokenize a text of {len(raw)} bytes ({n})")
            values.frombytes(bytes(memoryview(buf).cast("B")[: 4 * n]))
            if append_eos:
                values.append(self.eos_id)
            offsets.append(len(values))
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))

    def describe(self, append_eos: bool) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "eos_id": self.eos_id, "append_eos": append_eos,
                "bos": False}


@lru_cache(maxsize=4)
def load_tokenizer(name: str) -> Tokenizer:
    """A shipped model's name ('smollm2-135m-instruct') or a path to a .gguf file."""
    from pipeline.llm.llamacpp import resolve_model_path

    try:
        from llama_cpp import Llama
    except ImportError:
        raise UserError("publish.tokenizer needs llama-cpp-python (pip install -e '.[embedded]')") from None
    path = resolve_model_path(name)
    llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
    return Tokenizer(name=name if not name.endswith(".gguf") else path.name, vocab_size=llama.n_vocab(),
                     eos_id=llama.token_eos(), _llama=llama)
