"""The one interface every LLM backend speaks.

A backend takes a batch of :class:`ChatRequest` and returns, for each, the
completions it asked for with their token usage. Generation code never knows
which backend runs; the response cache wraps any of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 400
    repeat_penalty: float = 1.0
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and this runs for every sample's cache key
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "repeat_penalty": self.repeat_penalty, "stop": list(self.stop)}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """``n`` samples of one chat prompt, numbered ``first_sample`` onwards.

    Sample ``i`` is drawn with :func:`sample_seed` ``(seed, i)``, so sample 3
    of a request is the same completion whether it was asked for alone or as
    part of ``n=5``. That is what lets the cache fill only the missing ones.
    """

    messages: tuple[Message, ...]
    params: SamplingParams
    seed: int = 0
    n: int = 1
    first_sample: int = 0
    json_schema: dict | None = field(default=None, hash=False)  # structured output, where the backend can

    @property
    def sample_indices(self) -> range:
        return range(self.first_sample, self.first_sample + self.n)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | ...
    prompt_tokens: int
    completion_tokens: int
    cached: bool = field(default=False, compare=False)


OnDone = Callable[[int, list[Completion]], None]
"""Called with (request index in the batch, its completions) as each request finishes."""


@runtime_checkable
class Backend(Protocol):
    """Anything that turns chat requests into completions."""

    @property
    def model_id(self) -> str:
        """Names the weights and the engine, e.g. ``llamacpp/SmolLM2-135M-Instruct.Q4_1@3f2a...``."""
        ...

    def generate(self, requests: Sequence[ChatRequest], on_done: OnDone | None = None) -> list[list[Completion]]:
        """Completions for every request, ``len(result[i]) == requests[i].n``.

        ``on_done`` fires once per request as soon as its completions exist, so
        a caller can persist them before the rest of the batch is done.
        """
        ...


def sample_seed(seed: int, sample_index: int) -> int:
    """A 31-bit seed for one sample, stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, e.g. ``derive_seed(recipe_seed, "solution", index)``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
