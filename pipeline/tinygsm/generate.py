"""Write problems from seeds, then sample k solutions for each problem that passes its checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.exemplars import ExemplarPool
from pipeline.llm.types import Backend, ChatRequest, SamplingParams
from pipeline.solving.config import QuestionFilterConfig
from pipeline.records import make_id, rejection
from pipeline.solving import SOLUTION_TEMPLATE_ID, Ask, WorkedExample, check_question, sample_solutions
from pipeline.tinygsm.extract import extract_question
from pipeline.tinygsm.prompts import QUESTION_SCHEMA, ProblemSpec, question_messages, question_prompt, question_template_id


def generate_problems(
    specs: Sequence[ProblemSpec], backend: Backend, question_params: SamplingParams,
    solution_params: SamplingParams, samples: int, example: WorkedExample, checks: QuestionFilterConfig,
    structured: bool = False, pool: ExemplarPool | None = None, exemplars: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Returns (records with k candidate solutions each, rejected problems).

    ``structured``: the backend constrains output to a JSON schema, so the
    problem is asked for as ``{"question": ...}``; the parser reads either form.
    Each rewrite request is preceded by ``exemplars`` example rewrites drawn from ``pool`` by the
    problem's seed.
    """
    prompts = [question_prompt(s.seed, structured) for s in specs]
    schema = QUESTION_SCHEMA if structured else None
    shown = [pool.draw(exemplars, s.question_seed) if pool is not None else () for s in specs]
    outputs = backend.generate([ChatRequest(question_messages(s.seed, structured, ex), question_params,
                                            seed=s.question_seed, json_schema=schema)
                                for s, ex in zip(specs, shown, strict=True)])
    records, rejected = [], []
    for spec, prompt, ex, (completion,) in zip(specs, prompts, shown, outputs, strict=True):
        question = extract_question(completion.text)
        record = {
            "id": make_id(question or completion.text), "index": spec.index, "question": question,
            "seed_id": spec.seed.id, "prompt": prompt, "prompt_template_id": question_template_id(structured),
            "exemplar_ids": [e.id for e in ex],
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

    # k solutions per surviving problem, shown the seed's own worked solution where it has one
    by_index = {spec.index: spec.seed for spec in specs}
    asks = [Ask(r["question"], by_index[r["index"]] if by_index[r["index"]].solution else example,
                r["solution_sampling"]["seed"]) for r in records]
    for record, sampled in zip(records, sample_solutions(backend, asks, solution_params, samples), strict=True):
        record["solutions"] = sampled.solutions
        record["num_tokens"] += sampled.completion_tokens
    return records, rejected
