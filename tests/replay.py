"""Completions written into a build's response cache before the build runs, so a test's outcome never
depends on which text the embedded model happens to sample on this CPU.

The embedded model's samples differ between CPUs (their kernels round differently), and a 135M model
keeps about one story in eight, so a test that needs something published cannot leave all of it to the
sampled text. These helpers ask the pipeline's own generation code which requests a build will make for
chosen items (the same prompts, sampling parameters and seeds) through a scripted backend, and store the
given texts under those requests' keys in ``<output_root>/cache/responses.sqlite``. The real build then
serves those items from the cache (a cache hit, as on a re-run) and runs the real model for every other
item; ``CachedBackend`` counts both, which is how the tests check that the model really ran.

The texts are hand-written (below) or recorded from the real model (``fixtures/evol_cases.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.fingerprint import file_sha256
from pipeline.llm import ChatRequest, Completion, ResponseCache, cache_path, sampling_params
from pipeline.llm.llamacpp import resolve_model_path
from pipeline.recipe import load_recipe
from pipeline.sandbox import RunResult

# Distinct short stories (so dedup never merges two of them) that pass every story filter, with the
# story's required words filled in. Plain words, no markup, no talk about the task, ending with a period.
STORIES = (
    "Once upon a time, a little girl named Lily lived in a small house near the woods. One day she found a "
    "{adjective} {noun} under a big tree. She wanted to {verb} with it, so she asked her mom. Her mom smiled "
    "and said yes. Lily played all day and was very happy. At night she said thank you to the tree.",
    "Tom was a boy who liked to run in the park with his dog, Max. One sunny morning Tom saw a {adjective} "
    "{noun} by the pond. Max barked and wagged his tail. Tom said, \"Let us {verb} together!\" They had fun "
    "until the sun went down. Then they walked home and ate warm soup with Dad.",
    "Sam the cat lived on a farm with many friends. There was a cow, a pig and a duck. Every day Sam would "
    "{verb} near the barn. One day the duck brought a {adjective} {noun} to show everyone. The pig laughed "
    "and the cow said it was pretty. Sam learned that sharing makes friends glad.",
    "Mia had a red ball and a blue hat. She went to the beach with her brother Ben. The water was cold, but "
    "the sand was warm. Ben found a {adjective} {noun} in the sand. Mia and Ben tried to {verb} like the "
    "birds. They laughed so much that their mom laughed too. It was the best day of the summer.",
    "In a quiet town there was an old man who made toys. Children came to his shop every week. One girl asked "
    "for a {adjective} {noun}. The old man worked all night to make it. When she came back, she began to "
    "{verb} and sing. The old man felt proud, and the whole town heard her happy song.",
    "Ben the bear woke up hungry after his long winter sleep. He walked through the green forest to look for "
    "food. He met a rabbit who showed him a {adjective} {noun} full of berries. Ben was kind and did not "
    "take them all. He stopped to {verb} with the rabbit, and they became good friends.",
)


def story(i: int, words: Sequence[str]) -> str:
    """Story ``i`` of :data:`STORIES` with a record's [verb, noun, adjective]."""
    verb, noun, adjective = words
    return STORIES[i % len(STORIES)].format(verb=verb, noun=noun, adjective=adjective)


def embedded_model_id(model: str = "smollm2-135m-instruct") -> str:
    """The id the embedded engine reports (and keys the cache by), without loading the model."""
    path = resolve_model_path(model)
    return f"llamacpp/{path.stem}@{file_sha256(path)[:12]}"


class ScriptedBackend:
    """A backend whose every answer comes from ``answer(call, request)`` (texts, or None: not recorded).

    It exists only to learn which requests the pipeline makes; nothing it answers reaches a build.
    """

    def __init__(self, model_id: str, answer: Callable[[int, ChatRequest], list[str] | None]):
        self.model_id, self.answer = model_id, answer
        self.calls = 0
        self.recorded: list[tuple[ChatRequest, list[Completion]]] = []

    def generate(self, requests: Sequence[ChatRequest], on_done: Any = None) -> list[list[Completion]]:
        out = []
        for request in requests:
            texts = self.answer(self.calls, request)
            if texts is None:
                out.append([Completion("", "stop", 0, 0) for _ in range(request.n)])
                continue
            assert len(texts) == request.n, f"{request.n} samples asked for, {len(texts)} given"
            completions = [Completion(t, "stop", 50, max(1, len(t.split()) * 4 // 3)) for t in texts]
            self.recorded.append((request, completions))
            out.append(completions)
        self.calls += 1
        return out


def store(recipe: Any, backend: ScriptedBackend) -> int:
    """Write what ``backend`` recorded into the recipe's response cache; returns the completions stored."""
    cache = ResponseCache(cache_path(recipe.output_root))
    try:
        for request, completions in backend.recorded:
            cache.put_many(backend.model_id, request, completions)
    finally:
        cache.close()
    return sum(len(c) for _, c in backend.recorded)


def _recipe(recipe_path: str | Path, **overrides: Any) -> Any:
    return load_recipe(recipe_path, **{k: v for k, v in overrides.items() if v is not None})


def preload_stories(recipe_path: str | Path, indices: Sequence[int], *, output_root: str | Path | None = None,
                    seed: int | None = None, model_id: str | None = None) -> dict[int, str]:
    """Store a hand-written story (:data:`STORIES`) for each story index; returns {index: text}.

    Summaries are not stored: where the recipe asks for one, the model writes it during the build.
    """
    from pipeline.tinystories.generate import generate_stories
    from pipeline.tinystories.prompts import plan_story, story_exemplars
    from pipeline.tinystories.vocab import load_vocabulary

    recipe = _recipe(recipe_path, output_root=output_root, seed=seed)
    vocab = load_vocabulary(recipe.generate.vocab_dir)
    specs = [plan_story(i, recipe.seed, recipe.generate, vocab) for i in indices]
    texts = {s.index: story(s.index, s.words) for s in specs}
    by_seed = {s.seed: s.index for s in specs}
    backend = ScriptedBackend(model_id or embedded_model_id(recipe.backend.model),
                              lambda call, r: [texts[by_seed[r.seed]]] if call == 0 else None)
    g = recipe.generate  # the same chat a build sends: the exemplar turns, then the request
    generate_stories(specs, backend, sampling_params(recipe.sampling),
                     story_exemplars(g.exemplars_path) if g.exemplars else None, g.exemplars)
    assert store(recipe, backend) == len(indices)
    return texts


def preload_problems(recipe_path: str | Path, problems: dict[int, tuple[str, list[str]]], *,
                     output_root: str | Path | None = None) -> dict[int, str]:
    """Store, for each TinyGSM problem index, its written problem and its k sampled solutions.

    ``problems``: {index: (question, [k solution texts])}; returns {index: seed problem it rewrites}.
    The question is stored as the model's reply would be (JSON where the backend enforces a schema).
    """
    from pipeline.llm.config import wants_structured_output
    from pipeline.tinygsm.generate import generate_problems
    from pipeline.tinygsm.prompts import plan_problem, rewrite_exemplars
    from pipeline.solving import shipped_example
    from pipeline.tinygsm.seeds import load_seeds

    recipe = _recipe(recipe_path, output_root=output_root)
    structured = wants_structured_output(recipe.backend)
    seeds = load_seeds(recipe.seeds)
    specs = [plan_problem(i, recipe.seed, seeds) for i in problems]
    by_question_seed = {s.question_seed: s.index for s in specs}
    by_solution_seed = {s.solution_seed: s.index for s in specs}

    def answer(call: int, request: ChatRequest) -> list[str]:
        if call == 0:
            q = problems[by_question_seed[request.seed]][0]
            return [json.dumps({"question": q}) if structured else q]
        return problems[by_solution_seed[request.seed]][1]

    backend = ScriptedBackend(embedded_model_id(recipe.backend.model), answer)
    g = recipe.generate  # the same chat a build sends: the exemplar turns, then the request
    records, rejected = generate_problems(
        specs, backend, sampling_params(recipe.sampling), sampling_params(recipe.solution_sampling),
        g.samples, shipped_example(), recipe.filter, structured,
        rewrite_exemplars(g.exemplars_path) if g.exemplars else None, g.exemplars)
    assert not rejected, f"a preloaded problem fails the question checks: {[r['detail'] for r in rejected]}"
    store(recipe, backend)
    return {s.index: s.seed.question for s in specs}


class _NoSandbox:
    """Stands in for the sandbox while the requests are learned: nothing it returns is kept."""

    def run_many(self, programs: Sequence[str]) -> list[RunResult]:
        return [RunResult("ok", value=0) for _ in programs]


def preload_evolution(recipe_path: str | Path, parent: dict[str, Any], round_: int, evolution: str,
                      response: str | None = None, solutions: list[str] | None = None) -> dict[str, Any]:
    """Store the evolver's reply for ``parent`` in ``round_`` and the responder's answer to it:
    ``response`` for a general pool, or the k sampled ``solutions`` for a math pool. Returns the evolved
    record, as the build's next round takes it as a parent (preload its round with it)."""
    from pipeline.evol.build import _settings
    from pipeline.evol.evolve import MathGate, evolve_batch
    from pipeline.solving import Rule
    from pipeline.solving import shipped_example

    recipe = _recipe(recipe_path)
    math = None
    if solutions is not None:
        m = recipe.math
        math = MathGate(sampling_params(m.solution_sampling), m.samples, Rule.of(m.verify), m.filter,
                        shipped_example(), _NoSandbox())
    replies = iter([[evolution], solutions if solutions is not None else [response]])
    backend = ScriptedBackend(embedded_model_id(recipe.backend.model), lambda call, r: next(replies))
    node = {"root_id": parent["id"], "round": round_ - 1, **parent}
    evolved = evolve_batch([node], round_, _settings(recipe), backend, backend, math)
    assert not evolved.rejected and len(backend.recorded) == 2, f"the preloaded evolution was eliminated: {evolved.rejected}"
    store(recipe, backend)
    return evolved.survivors[0]


def import_rows(output_root: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Recorded cache rows (``ResponseCache.export_rows``) into a build's response cache, keys as they are."""
    cache = ResponseCache(Path(output_root) / "cache" / "responses.sqlite")
    try:
        cache.import_rows(rows)
    finally:
        cache.close()


def cached_completions(output_root: str | Path) -> int:
    """How many completions the response cache under ``output_root`` holds."""
    cache = ResponseCache(Path(output_root) / "cache" / "responses.sqlite")
    try:
        return len(cache)
    finally:
        cache.close()


class _Models:
    """Stands in for a build's models while a stage's requests are learned: every backend is ``backend``."""

    def __init__(self, backend: ScriptedBackend):
        self.backend = backend

    def open(self, config: Any) -> ScriptedBackend:
        return self.backend


def voted_samples(place: int, problem: Any, k: int) -> list[str]:
    """Four distinct programs for a gold problem, by its place in the stage's order, mod 4: three return
    the gold answer and one another (0 and 2: kept, right), three another and one the gold (1: kept,
    wrong), or four different answers (3: not kept). Every problem has a right sample."""
    gold, wrong = problem.answer, problem.answer + 1
    values = {0: [gold, gold, gold, wrong], 1: [wrong, wrong, wrong, gold], 2: [gold, gold, gold, wrong],
              3: [gold, wrong, gold + 2, gold + 3]}[place % 4]
    # four shapes, so that each is its own program (a renamed variable is the same program to the vote)
    bodies = ("return {v!r}", "x = {v!r}\n    return x", "x = {v!r} * 2\n    return x / 2",
              "x = {v!r} + 1\n    return x - 1")
    assert k == len(values), f"voted_samples writes 4 samples, the recipe asks for {k}"
    return ["def simple_math_problem():\n    " + body.format(v=v) + "\n" for body, v in zip(bodies, values)]


def voted_figures(problems: int) -> tuple[int, int]:
    """(kept, right) of ``problems`` gold problems whose samples are :func:`voted_samples`."""
    places = [i % 4 for i in range(problems)]
    return sum(p != 3 for p in places), sum(p in (0, 2) for p in places)


def preload_calibration(recipe_path: str | Path, calibration_of: Callable[[Any], Any],
                        solutions: Callable[[int, Any, int], list[str]] = voted_samples) -> list[Any]:
    """Store the k sampled solutions of every gold problem the recipe's calibrate stage solves:
    ``solutions(place, problem, k)`` writes them (by default :func:`voted_samples`). ``calibration_of(recipe)``
    is the kind's calibration (``pipeline.tinygsm.build.calibration``, ``pipeline.evol.build.calibration``).
    The stage's own work runs once to learn the requests, with the real sandbox. Returns the gold problems,
    in the stage's order."""
    recipe = _recipe(recipe_path)
    cal = calibration_of(recipe)
    problems = cal.problems()

    def answer(call: int, request: ChatRequest) -> list[str]:
        (place,) = [i for i, p in enumerate(problems) if p.question in request.messages[-1].content]
        return solutions(place, problems[place], request.n)

    backend = ScriptedBackend(embedded_model_id(cal.setup.backend.model), answer)
    cal.work(problems, 0, len(problems), _Models(backend))
    assert store(recipe, backend) == len(problems) * cal.setup.samples
    return problems
