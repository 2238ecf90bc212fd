"""Sampling k solution programs for a problem, and solving: sampling, then verifying by execution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams
from pipeline.sandbox import Sandbox
from pipeline.solving.extract import extract_function
from pipeline.solving.prompt import WorkedExample, solution_prompt
from pipeline.solving.verify import Rule, Verified, verify


@dataclass(frozen=True)
class Ask:
    """One problem to sample solutions for: the question, the worked example shown, the sampling seed."""

    question: str
    example: WorkedExample
    seed: int


@dataclass(frozen=True)
class Sampled:
    solutions: list[str | None]  # each sample's simple_math_problem source (None: the sample wrote none)
    completion_tokens: int  # spent on all k samples


def sample_solutions(backend: Backend, asks: Sequence[Ask], params: SamplingParams, k: int) -> list[Sampled]:
    """k sampled solutions per problem, one request each (``n = k``, so a backend may sample them together)."""
    outputs = backend.generate([ChatRequest((Message("user", solution_prompt(a.question, a.example)),), params,
                                            seed=a.seed, n=k) for a in asks])
    return [Sampled([extract_function(c.text) for c in completions], sum(c.completion_tokens for c in completions))
            for completions in outputs]


@dataclass(frozen=True)
class Solver:
    """One model's solution sampler and the vote over its samples: what a math build verifies with."""

    backend: Backend
    params: SamplingParams
    samples: int  # k
    rule: Rule
    sandbox: Sandbox

    def solve(self, asks: Sequence[Ask]) -> list[tuple[Sampled, Verified]]:
        sampled = sample_solutions(self.backend, asks, self.params, self.samples)
        verified = verify([(a.question, s.solutions) for a, s in zip(asks, sampled, strict=True)], self.sandbox,
                          self.rule)
        return list(zip(sampled, verified, strict=True))
