"""Turn story specs into candidate records through any LLM backend."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pipeline.exemplars import ExemplarPool
from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams
from pipeline.records import make_id, rejection
from pipeline.tinystories.prompts import (
    STORY_TEMPLATE_ID,
    SUMMARY_TEMPLATE_ID,
    StorySpec,
    story_messages,
    story_prompt,
    summary_prompt,
)

# Small chat models like to announce or title what they write.
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course)\b[^\n]*\n|here(?:'s| is)\b[^\n]*(?:story|summary)[^\n]*\n"
    r"|(?:\*\*|#+\s*)?title\s*:[^\n]*\n|\*\*[^*\n]{1,80}\*\*\s*\n|#+ [^\n]*\n)",
    re.IGNORECASE,
)
_SUMMARY_PREFIX = re.compile(r"^\s*(?:summary\s*:|here(?:'s| is)[^:\n]*:)\s*", re.IGNORECASE)
_END_MARK = re.compile(r"\s*(?:the end\.?)\s*$", re.IGNORECASE)


def clean_story(text: str) -> str:
    """Strip chat preambles and titles; keep the story itself untouched."""
    text = text.strip()
    for _ in range(3):  # a preamble line, then a title line
        stripped = _PREAMBLE.sub("", text + "\n", count=1).strip()
        if stripped == text:
            break
        text = stripped
    text = _END_MARK.sub("", text).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def clean_summary(text: str) -> str | None:
    text = _SUMMARY_PREFIX.sub("", text.strip()).strip().strip('"').strip()
    return text.split("\n")[0].strip() or None


def _chat(prompt: str) -> tuple[Message, ...]:
    return (Message("user", prompt),)


def generate_stories(
    specs: Sequence[StorySpec], backend: Backend, params: SamplingParams, pool: ExemplarPool | None = None,
    exemplars: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Generate one story per spec (and a summary where asked), each request preceded by ``exemplars``
    example stories drawn from ``pool`` by the story's seed. Returns (records, rejected)."""
    prompts = [story_prompt(s) for s in specs]
    shown = [pool.draw(exemplars, s.seed) if pool is not None else () for s in specs]
    requests = [ChatRequest(story_messages(s, ex), params, seed=s.seed) for s, ex in zip(specs, shown, strict=True)]
    outputs = backend.generate(requests)

    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    sampling = params.to_dict()
    for spec, prompt, ex, (completion,) in zip(specs, prompts, shown, outputs, strict=True):
        story = clean_story(completion.text)
        record = {
            "id": make_id(story),
            "index": spec.index,
            "story": story,
            "summary": None,
            "words": list(spec.words),
            "features": list(spec.features),
            "sentence": spec.sentence,
            "prompt": prompt,
            "prompt_template_id": STORY_TEMPLATE_ID,
            "exemplar_ids": [e.id for e in ex],
            "summary_template_id": None,
            "generator_model": backend.model_id,
            "sampling": {**sampling, "seed": spec.seed, "sample_index": 0},
            "finish_reason": completion.finish_reason,
            "num_tokens": completion.completion_tokens,
        }
        if not story:
            rejected.append(rejection(record, "generate", "empty_completion", repr(completion.text[:200]), "story"))
        else:
            records.append(record)

    # Summaries are a second turn, asked only of stories worth summarising.
    wanted = {s.index for s in specs if s.want_summary}
    todo = [r for r in records if r["index"] in wanted and r["finish_reason"] != "length"]
    if todo:
        summary_params = SamplingParams(
            temperature=min(params.temperature, 0.5), top_p=params.top_p, max_tokens=80,
            repeat_penalty=params.repeat_penalty,
        )
        summary_requests = [ChatRequest(_chat(summary_prompt(r["story"])), summary_params, seed=r["sampling"]["seed"])
                            for r in todo]
        for record, (completion,) in zip(todo, backend.generate(summary_requests), strict=True):
            record["summary"] = clean_summary(completion.text)
            record["summary_template_id"] = SUMMARY_TEMPLATE_ID
    return records, rejected
