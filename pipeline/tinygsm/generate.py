"""Write problems from seeds, then sample k solutions for each problem that passes its checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams
from pipeline.recipe import QuestionFilterConfig
from pipeline.records import make_id, rejection
from pipeline.tinygsm.extract import extract_function, extract_question
from pipeline.tinygsm.filters import check_question
from pipeline.tinygsm.prompts import (
    QUESTION_SCHEMA,
    SOLUTION_TEMPLATE_ID,
    ProblemSpec,
    question_messages,
    question_prompt,
    question_template_id,
    solution_prompt,
)
from pipeline.tinygsm.seeds import Seed


def _chat(prompt: str) -> tuple[Message, ...]:
    return (Message("user", prompt),)


def generate_problems(
    specs: Sequence[ProblemSpec], backend: Backend, question_params: SamplingParams,
    solution_params: SamplingParams, samples: int, example: Seed, checks: QuestionFilterConfig,
    structured: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Returns (records with k candidate solutions each, rejected problems).

    ``structured``: the backend constrains output to a JSON schema, so the
    problem is asked for as ``{"question": ...}``; the parser reads either form.
    """
    prompts = [question_prompt(s.seed, structured) for s in specs]
    schema = QUESTION_SCHEMA if structured else None
    outputs = backend.generate([ChatRequest(question_messages(s.seed, structured), question_params,
                                            seed=s.question_seed, json_schema=schema) for s in specs])
    records, rejected = [], []
    for spec, prompt, (completion,) in zip(specs, prompts, outputs, strict=True):
        question = extract_question(completion.text)
        record = {
            "id": make_id(question or completion.text), "index": spec.index, "question": question,
            "seed_id": spec.seed.id, "prompt": prompt, "prompt_template_id": question_template_id(structured),
            "solution_template_id": SOLUTION_TEMPLATE_ID, "generator_model": backend.model_id,
            "sampling": {**question_params.to_dict(), "seed": spec.question_seed, "sample_index": 0},
            "solution_sampling": {**solution_params.to_dict(), "seed": spec.solution_seed, "samples": samples},
            "finish_reason": completion.finish_reason, "num_tokens": completion.completion_tokens,
        }
        verdict = check_question(question, spec.seed.question, checks)
        if verdict is not None:
            rejected.append(rejection(record | {"raw": completion.text}, "generate", *verdict, "question"))
        else:
            records.append(record)

    # k solutions per surviving problem, in one request each (n = k).
    ex = {r["index"]: (spec.seed if spec.seed.solution else example) for spec in specs for r in records
          if r["index"] == spec.index}
    requests = [ChatRequest(_chat(solution_prompt(r["question"], ex[r["index"]])), solution_params,
                            seed=r["solution_sampling"]["seed"], n=samples) for r in records]
    for record, completions in zip(records, backend.generate(requests), strict=True):
        record["solutions"] = [extract_function(c.text) for c in completions]
        record["num_tokens"] += sum(c.completion_tokens for c in completions)
    return records, rejected
