"""The response cache in front of the real embedded model."""

from __future__ import annotations

import pytest

from pathlib import Path

from pipeline.llm import CachedBackend, ChatRequest, Message, ResponseCache, SamplingParams

PARAMS = SamplingParams(temperature=0.9, top_p=0.95, max_tokens=12, repeat_penalty=1.15)


class CountingBackend:
    """The real backend, with a count of the samples it was asked for."""

    def __init__(self, inner):
        self.inner, self.samples = inner, 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, requests, on_done=None):
        self.samples += sum(r.n for r in requests)
        return self.inner.generate(requests, on_done)


def req(text: str, seed: int = 1, n: int = 1) -> ChatRequest:
    return ChatRequest((Message("user", text),), PARAMS, seed=seed, n=n)


@pytest.mark.slow
def test_real_model_returns_completions_with_usage(embedded_backend) -> None:
    (out,) = embedded_backend.generate([req("Say hello to a cat.", n=2)])
    assert len(out) == 2
    for c in out:
        # whatever was sampled (an end of turn as the first token included), each sample was decoded to its end
        assert 0 <= c.completion_tokens <= 12 and c.prompt_tokens > 5 and c.finish_reason in {"stop", "length"}
        assert c.finish_reason == "stop" or (c.completion_tokens == 12 and c.text)
    assert sum(c.completion_tokens for c in out) > 0
    assert embedded_backend.model_id.startswith("llamacpp/SmolLM2-135M-Instruct.Q4_1@")


@pytest.mark.slow
def test_sample_seed_makes_samples_reproducible(embedded_backend) -> None:
    (a,) = embedded_backend.generate([ChatRequest((Message("user", "Name a fruit."),), PARAMS, seed=5, n=2)])
    (b,) = embedded_backend.generate([ChatRequest((Message("user", "Name a fruit."),), PARAMS, seed=5, n=1,
                                                  first_sample=1)])
    assert a[1].text == b[0].text  # sample 1 is sample 1, asked for alone or in a batch


@pytest.mark.slow
def test_cache_never_pays_twice_and_fills_only_missing_samples(embedded_backend, tmp_path: Path) -> None:
    counting = CountingBackend(embedded_backend)
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = CachedBackend(counting, cache)
    first = backend.generate([req("Name a color."), req("Name a dog.", n=2)])
    assert counting.samples == 3 and len(cache) == 3

    # a new process: a fresh wrapper over the same file
    cache2 = ResponseCache(tmp_path / "c.sqlite")
    again = CachedBackend(counting, cache2)
    second = again.generate([req("Name a color."), req("Name a dog.", n=3)])
    assert counting.samples == 4  # only sample 2 of the second request was new
    assert [c.text for c in second[0]] == [c.text for c in first[0]]
    assert [c.text for c in second[1][:2]] == [c.text for c in first[1]]
    assert all(c.cached for c in second[0]) and not second[1][2].cached
    assert again.stats.as_dict()["cache_hits"] == 3 and again.stats.as_dict()["model_calls"] == 1

    # any change to the prompt, the parameters or the seed is a different key
    again.generate([req("Name a color.", seed=2)])
    assert counting.samples == 5


@pytest.mark.slow
def test_on_done_fires_per_request_so_work_is_saved_early(embedded_backend, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    seen: list[tuple[int, int]] = []

    def on_done(i, completions):
        seen.append((i, len(cache)))

    CachedBackend(embedded_backend, cache).generate([req("One."), req("Two."), req("Three.")], on_done=on_done)
    assert seen == [(0, 1), (1, 2), (2, 3)]  # each request was committed before the next began


def test_sampling_params_to_dict_names_every_field() -> None:
    """The cache key is built from to_dict(): a field it left out would make two samplings one key."""
    from dataclasses import fields

    from pipeline.llm.types import SamplingParams

    assert list(SamplingParams().to_dict()) == [f.name for f in fields(SamplingParams)]
