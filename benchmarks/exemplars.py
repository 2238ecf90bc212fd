"""Exemplar turns against the instruction alone: same model, same inputs, same seeds, same rules.

The baseline row sends the instruction alone (``exemplars = 0``); the other
shows ``k`` exemplars from ``data/exemplars/`` as earlier chat turns (the
default, 2). Both rows run the embedded SmolLM2-135M on the same inputs.

``stories`` (default): the demo recipe's first ``n`` story specs (words,
features, sampling seed) and its filter. Columns: yield (share passing every
filter), meta-text (share whose text talks about the task: mentions the
prompt, "the story", "words", a title, or emoji; a heuristic for the replies
issue 17 quotes), dialogue (a quoted utterance), all 3 words, mean words.

``evol``: the first ``n`` shipped seed instructions, one round of the evol
demo's settings (operations round-robin, responses on). Columns: survived
(evolution and response pass elimination), not an instruction (share of
evolutions the `not_an_instruction` rule rejects), eliminated (any
evolution rule), mean words of the evolved instruction.

``math``: the TinyGSM demo's first ``n`` problems, the rewrite step alone
(no solutions), its sampling and question checks, with a third row: the two
fixed example rewrites every problem saw before the pool. Columns: passed
(the rewrite passes the question checks), solved instead (the reply holds
code or "the answer is" rather than a problem), mean words.

    .venv/bin/python benchmarks/exemplars.py [stories|evol|math] [N] [K] [DUMP.jsonl]

DUMP, when given, receives every output of both rows, to read them.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.llm import load_backend, sampling_params  # noqa: E402
from pipeline.llm.types import Backend  # noqa: E402
from pipeline.paths import RECIPES_DIR, STORY_EXEMPLARS_FILE, VOCAB_DIR  # noqa: E402
from pipeline.llm.config import LlamaCppBackendConfig
from pipeline.recipe import load_recipe  # noqa: E402
from pipeline.text import words  # noqa: E402

META = re.compile(r"\b(?:the story|this story|a story|words?\s*:|prompt|title|written|write|3-year-old)\b"
                  r"|[\U0001F300-\U0001FAFF\u2600-\u27BF]", re.IGNORECASE)
Row = dict[str, Any]


def stories(backend: Backend, n: int, k: int) -> tuple[Callable[[int], tuple[Row, list[Row]]], str]:
    from pipeline.tinystories.filters import filter_stories
    from pipeline.tinystories.generate import generate_stories
    from pipeline.tinystories.prompts import plan_stories, story_exemplars
    from pipeline.tinystories.vocab import load_vocabulary

    demo = load_recipe(RECIPES_DIR / "tinystories-demo.toml")
    vocab = load_vocabulary(VOCAB_DIR)
    specs = plan_stories(0, n, demo.seed, demo.generate, vocab)
    pool = story_exemplars(STORY_EXEMPLARS_FILE)

    def run(shown: int) -> tuple[Row, list[Row]]:
        records, _ = generate_stories(specs, backend, sampling_params(demo.sampling), pool if shown else None, shown)
        kept = {r["id"] for r in filter_stories(records, vocab, demo.filter)[0]}
        m = max(1, len(records))
        row = {"yield": len(kept) / n, "meta-text": sum(bool(META.search(r["story"])) for r in records) / m,
               "dialogue": sum('"' in r["story"] or "\u201c" in r["story"] for r in records) / m,
               "all 3 words": sum(all(w in r["story"].lower() for w in r["words"]) for r in records) / m,
               "mean words": sum(len(words(r["story"])) for r in records) / m,
               "tokens": sum(r["num_tokens"] for r in records)}
        return row, [{"kept": r["id"] in kept, **{f: r[f] for f in ("words", "features", "exemplar_ids", "story")}}
                     for r in records]

    return run, f"{n} stories, the demo recipe's sampling and filter"


def evolutions(backend: Backend, n: int, k: int) -> tuple[Callable[[int], tuple[Row, list[Row]]], str]:
    from pipeline.evol.build import _settings
    from pipeline.evol.evolve import evolve_batch
    from pipeline.evol.seeds import load_seed_pool

    demo = load_recipe(RECIPES_DIR / "evol-demo.toml")
    seeds = load_seed_pool(demo.seeds.path, demo.seeds.field, False, n).seeds
    pool = [{"id": s.id, "instruction": s.instruction, "root_id": s.id, "round": 0} for s in seeds]
    base = _settings(demo)

    def run(shown: int) -> tuple[Row, list[Row]]:
        out = evolve_batch(pool, 1, replace(base, exemplars=shown, pool=base.pool if shown else None), backend,
                           backend)
        reasons = [r["reason"] for r in out.rejected]
        evolution = {"empty", "template_leak", "copied_prompt", "not_an_instruction", "length_out_of_bounds",
                     "no_information_gain"}
        children = [r["instruction"] for r in out.survivors] + [r["text"] for r in out.rejected if r["text"]]
        row = {"survived": len(out.survivors) / n, "not an instruction": reasons.count("not_an_instruction") / n,
               "eliminated": sum(r in evolution for r in reasons) / n,
               "mean words": sum(len(words(c)) for c in children) / max(1, len(children)),
               "tokens": sum(r["num_tokens"] for r in out.survivors)}
        return row, ([{"kept": True, "instruction": r["instruction"], "parent_id": r["parent_id"]} for r in out.survivors]
                     + [{"kept": False, "reason": r["reason"], "instruction": r["text"]} for r in out.rejected])

    return run, f"{n} seed instructions, one round of the evol demo's settings"


def rewrites(backend: Backend, n: int, k: int) -> tuple[Callable[[int | str], tuple[Row, list[Row]]], str]:
    from pipeline.llm import ChatRequest
    from pipeline.paths import REWRITE_EXEMPLARS_FILE
    from pipeline.llm.config import wants_structured_output
    from pipeline.solving import check_question
    from pipeline.tinygsm.extract import extract_question
    from pipeline.tinygsm.prompts import QUESTION_SCHEMA, plan_problem, question_messages, rewrite_exemplars
    from pipeline.tinygsm.seeds import load_seeds

    demo = load_recipe(RECIPES_DIR / "tinygsm-demo.toml")
    seeds = load_seeds(demo.seeds)
    specs = [plan_problem(i, demo.seed, seeds) for i in range(n)]
    pool, structured = rewrite_exemplars(REWRITE_EXEMPLARS_FILE), wants_structured_output(demo.backend)
    solved = re.compile(r"def |```|the answer is|= \d", re.IGNORECASE)

    def run(shown: int | str) -> tuple[Row, list[Row]]:
        chats = [question_messages(s.seed, structured, pool.items[:2] if shown == "fixed" else pool.draw(int(shown),
                                   s.question_seed)) for s in specs]
        replies = backend.generate([ChatRequest(c, sampling_params(demo.sampling), seed=s.question_seed,
                                                json_schema=QUESTION_SCHEMA if structured else None)
                                    for c, s in zip(chats, specs, strict=True)])
        out = []
        for s, (reply,) in zip(specs, replies, strict=True):
            q = extract_question(reply.text)
            out.append({"seed": s.seed.question, "question": q, "passed": check_question(q, s.seed.question,
                                                                                       demo.filter) is None,
                        "solved": bool(solved.search(q or reply.text))})
        row = {"passed": sum(o["passed"] for o in out) / n, "solved instead": sum(o["solved"] for o in out) / n,
               "mean words": sum(len(words(o["question"] or "")) for o in out) / n,
               "tokens": sum(r[0].completion_tokens for r in replies)}
        return row, out

    return run, f"{n} TinyGSM demo problems, the rewrite step, the demo's sampling and question checks"


def main(kind: str, n: int, k: int, dump: Path | None) -> None:
    backend = load_backend(LlamaCppBackendConfig())
    run, title = {"stories": stories, "evol": evolutions, "math": rewrites}[kind](backend, n, k)
    variants: list[tuple[str, int | str]] = [("instruction only (baseline)", 0), (f"{k} exemplar turns", k)]
    if kind == "math":
        variants.insert(1, ("2 fixed example rewrites (before the pool)", "fixed"))
    rows = []
    for label, shown in variants:
        t0 = time.perf_counter()
        row, outputs = run(shown)
        rows.append({"prompt": label, **row, "s": time.perf_counter() - t0})
        if dump is not None:
            with dump.open("a", encoding="utf-8") as f:
                f.writelines(json.dumps({"prompt": label, **o}, ensure_ascii=False) + "\n" for o in outputs)
    print(f"{title}, SmolLM2-135M-Instruct (embedded)\n")
    cols = [c for c in rows[0] if c != "prompt"]
    print("| prompt | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.0%}" if isinstance(r[c], float) and c not in ("mean words", "s") else f"{r[c]:.0f}"
                 for c in cols]
        print(f"| {r['prompt']} | " + " | ".join(cells) + " |")
    first = cols[0]
    if rows[0][first]:
        print(f"\n{first} ratio (exemplars / baseline): {rows[-1][first] / rows[0][first]:.2f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    kind = args.pop(0) if args and args[0] in ("stories", "evol", "math") else "stories"
    main(kind, int(args[0]) if args else 32, int(args[1]) if len(args) > 1 else 2,
         Path(args[2]) if len(args) > 2 else None)
