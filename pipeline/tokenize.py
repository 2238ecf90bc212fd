"""Pre-tokenized ``input_ids`` for the shards: trainers skip their own tokenization pass.

The tokenizer is read from a GGUF file with llama.cpp's ``vocab_only`` mode
(no weights loaded): the shipped SmolLM2-135M's by default, so the ids match
the embedded generator's vocabulary, or any ``.gguf`` path for another
model's. Tokenizing is fast (about 4,000 short texts a second on one core)
next to everything else a publish does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.errors import UserError


@dataclass(frozen=True)
class Tokenizer:
    name: str
    vocab_size: int
    eos_id: int
    _llama: Any

    def encode(self, texts: Sequence[str], *, append_eos: bool = True) -> list[list[int]]:
        """Token ids of each text, no BOS; EOS appended so packed sequences keep their boundaries."""
        tail = [self.eos_id] if append_eos else []
        return [self._llama.tokenize(t.encode("utf-8"), add_bos=False, special=False) + tail for t in texts]

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
