"""One round of evolution over a batch of the pool: evolve, eliminate, respond, (solve), eliminate.

Plain Python over a backend; the build module runs it one Prefect task per
batch. Every instruction in the pool gets one operation; an evolution that
fails is rejected with its reason, and its parent goes back into the pool to
be evolved again next round (the paper's rule), unless the recipe says not to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.evol.eliminate import check_evolution, check_response, extract_instruction
from pipeline.exemplars import Exemplar, ExemplarPool, as_turns
from pipeline.evol.operations import (
    RESPONSE_TEMPLATE_ID,
    Operation,
    OperationName,
    judge_messages,
    judged_equal,
    operation,
)
from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams, derive_seed
from pipeline.solving.config import QuestionFilterConfig
from pipeline.records import make_id, rejection
from pipeline.sandbox import Sandbox
from pipeline.solving import SOLUTION_TEMPLATE_ID, Ask, Rule, Solver, WorkedExample, check_question
from pipeline.solving.calibrate import verifier_rows
from pipeline.text import words


Reject = Callable[[dict[str, Any], dict[str, Any], str, str], None]  # (record, parent, reason, detail)


@dataclass
class Evolved:
    """What one batch of one round made."""

    survivors: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    retry: list[dict[str, Any]]  # parents whose evolution failed: the next round evolves them again
    samples: list[dict[str, Any]]  # math pools: one verifier row per executed solution sample


@dataclass(frozen=True)
class EvolveSettings:
    seed: int
    operations: tuple[OperationName, ...]
    assignment: str  # "round_robin" | "random"
    min_words: int
    max_words: int
    max_growth: float
    max_similarity: float
    max_template_overlap: float
    judge: bool
    retry_failed: bool
    evolve_params: SamplingParams
    response_params: SamplingParams
    response_min_words: int
    allow_truncated: bool
    exemplars: int = 0  # example evolutions shown before each request
    pool: ExemplarPool | None = None


@dataclass(frozen=True)
class MathGate:
    """Evolved math problems must be solvable: k Python solutions in the sandbox must agree."""

    solution_params: SamplingParams
    samples: int
    rule: Rule
    question_checks: QuestionFilterConfig
    example: WorkedExample  # whose solution shows the expected format
    sandbox: Sandbox  # open


def pick_operation(parent_id: str, round_: int, s: EvolveSettings) -> Operation | OperationName:
    """Round-robin shifts each instruction's operation every round (the small-evolver paper's driver);
    'random' draws one from the recipe's mix, seeded by the parent and round."""
    if s.assignment == "round_robin":
        k = int(parent_id[:8], 16) if _is_hex(parent_id) else derive_seed(parent_id)
        return s.operations[(k + round_) % len(s.operations)]
    return s.operations[derive_seed(s.seed, "operation", round_, parent_id) % len(s.operations)]


def draw_exemplars(parent_id: str, round_: int, op: Operation, math: bool, s: EvolveSettings) -> tuple[Exemplar, ...]:
    """The example evolutions a request shows: of the pool's same kind (math or not), the operation's own
    first."""
    if s.pool is None or not s.exemplars:
        return ()
    return s.pool.draw(s.exemplars, s.seed, round_, parent_id, among=lambda e: bool(e.fields["math"]) == math,
                       prefer=lambda e: e.fields["operation"] == op.name)


def evolve_messages(op: Operation, instruction: str, exemplars: Sequence[Exemplar], math: bool) -> tuple[Message, ...]:
    """Each exemplar's parent in its own operation's template and its child as the reply, then the request."""
    def turn(e: Exemplar) -> tuple[str, str]:
        return operation(e.fields["operation"], math).prompt(e.fields["parent"]), e.fields["child"]

    return (*as_turns(exemplars, turn), *op.messages(instruction))


def _is_hex(text: str) -> bool:
    return len(text) >= 8 and all(c in "0123456789abcdef" for c in text[:8])


def _chat(text: str) -> tuple[Message, ...]:
    return (Message("user", text),)


def evolve_batch(pool: Sequence[dict[str, Any]], round_: int, s: EvolveSettings, evolver: Backend,
                 responder: Backend, math: MathGate | None = None) -> Evolved:
    stage = f"round-{round_}"
    is_math = math is not None
    ops = [operation(pick_operation(p["id"], round_, s), is_math) for p in pool]  # type: ignore[arg-type]
    seeds = [derive_seed(s.seed, "evolve", round_, p["id"]) for p in pool]
    shown = [draw_exemplars(p["id"], round_, op, is_math, s) for p, op in zip(pool, ops, strict=True)]
    replies = evolver.generate([ChatRequest(evolve_messages(op, p["instruction"], ex, is_math), s.evolve_params,
                                            seed=seed) for p, op, ex, seed in zip(pool, ops, shown, seeds, strict=True)])

    candidates, rejected, retry, samples = [], [], [], []

    def reject(record: dict[str, Any], parent: dict[str, Any], reason: str, detail: str) -> None:
        rejected.append(rejection(record, stage, reason, detail, "instruction"))
        if s.retry_failed:
            retry.append(parent)

    for parent, op, seed, ex, (reply,) in zip(pool, ops, seeds, shown, replies, strict=True):
        child = extract_instruction(reply.text)
        record = {
            "id": make_id(child or reply.text or parent["id"]), "instruction": child, "raw": reply.text,
            "parent_id": parent["id"], "parent_instruction": parent["instruction"], "root_id": parent["root_id"],
            "round": round_, "operation": op.name,
            "operation_kind": op.kind, "evolver_model": evolver.model_id, "prompt": op.prompt(parent["instruction"]),
            "prompt_template_id": op.template_id, "exemplar_ids": [e.id for e in ex],
            "sampling": {**s.evolve_params.to_dict(), "seed": seed, "sample_index": 0},
            "num_tokens": reply.completion_tokens,
        }
        verdict = check_evolution(parent["instruction"], child, op, min_words=s.min_words, max_words=s.max_words,
                                  max_growth=s.max_growth, max_similarity=s.max_similarity,
                                  max_template_overlap=s.max_template_overlap)
        if verdict is None and math is not None:
            verdict = check_question(child or "", parent["instruction"], math.question_checks)
        if verdict is not None:
            reject(record, parent, *verdict)
        else:
            candidates.append((parent, record))

    if s.judge and candidates:
        verdicts = evolver.generate([
            ChatRequest(judge_messages(p["instruction"], r["instruction"]), SamplingParams(0.0, 1.0, 8, 1.0),
                        seed=derive_seed(s.seed, "judge", round_, p["id"])) for p, r in candidates])
        kept = []
        for (parent, record), (v,) in zip(candidates, verdicts, strict=True):
            if judged_equal(v.text):
                reject(record, parent, "no_information_gain", f"judge: {v.text.strip()[:40]!r}")
            else:
                kept.append((parent, record))
        candidates = kept

    survivors = (_solve(candidates, round_, s, responder, math, reject, samples) if math is not None
                 else _respond(candidates, round_, s, responder, reject))
    return Evolved(survivors, rejected, retry, samples)


def _respond(candidates: list[tuple[dict[str, Any], dict[str, Any]]], round_: int, s: EvolveSettings,
             responder: Backend, reject: Reject) -> list[dict[str, Any]]:
    seeds = [derive_seed(s.seed, "respond", round_, p["id"]) for p, _ in candidates]
    answers = responder.generate([ChatRequest(_chat(r["instruction"]), s.response_params, seed=seed)
                                  for (_, r), seed in zip(candidates, seeds, strict=True)])
    survivors = []
    for (parent, record), seed, (answer,) in zip(candidates, seeds, answers, strict=True):
        text = answer.text.strip()
        record |= {"response": text, "answer": None, "answer_agreement": None, "verification": "not_applicable",
                   "responder_model": responder.model_id, "response_template_id": RESPONSE_TEMPLATE_ID,
                   "response_sampling": {**s.response_params.to_dict(), "seed": seed, "samples": 1},
                   "num_tokens": record["num_tokens"] + answer.completion_tokens}
        verdict = check_response(record["instruction"], text, answer.finish_reason,
                                 min_words=s.response_min_words, allow_truncated=s.allow_truncated)
        if verdict is not None:
            reject(record, parent, *verdict)
        else:
            survivors.append(_finished(record))
    return survivors


def _solve(candidates: list[tuple[dict[str, Any], dict[str, Any]]], round_: int, s: EvolveSettings,
           responder: Backend, math: MathGate, reject: Reject, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The solvability gate: k sampled Python solutions run in the sandbox and must agree on one answer.
    Every executed sample becomes a verifier row in ``samples``."""
    solver = Solver(responder, math.solution_params, math.samples, math.rule, math.sandbox)
    asks = [Ask(r["instruction"], math.example, derive_seed(s.seed, "solve", round_, p["id"])) for p, r in candidates]
    survivors = []
    for (parent, record), ask, (sampled, verified) in zip(candidates, asks, solver.solve(asks), strict=True):
        record |= {"responder_model": responder.model_id, "response_template_id": SOLUTION_TEMPLATE_ID,
                   "response_sampling": {**math.solution_params.to_dict(), "seed": ask.seed, "samples": math.samples},
                   "num_tokens": record["num_tokens"] + sampled.completion_tokens}
        samples += verifier_rows(record["id"], record["instruction"], sampled.solutions, verified, "build")
        if verified.passed:
            survivors.append(_finished(record | {"answer": verified.answer, "answer_agreement": verified.agreement,
                                                 "verification": "passed", "response": verified.code}))
        else:
            tried = {"samples": verified.samples, "answer": verified.answer, "answer_agreement": verified.agreement}
            reject(record | tried, parent, "unsolvable", f"{verified.reason}: {verified.detail}")
    return survivors


def _finished(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    record.pop("raw", None)
    record["num_words"] = len(words(record["instruction"]))
    record["response_words"] = len(words(record["response"]))
    return record
