"""One-shot prospecting ("Small Language Model as Data Prospector", SuperNUGGETS, after NUGGETS): how much
a record helps a small model when it is the one example shown before a task.

A fixed task set (``data/prospecting/tasks.jsonl``, original short instructions with reference
responses; a recipe may name its own) is scored by the embedded model twice: zero-shot, and with the
record as a one-shot example before each task. Per record:

* ``prospect_score``: the share of tasks whose response loss the example lowers (the papers' "golden
  score"): high means a record that teaches the format and content a small model needs;
* ``prospect_gain``: the mean drop in the tasks' response loss (nats per token), the same signal as a
  magnitude.

Cost: one forward pass per task and record (plus the zero-shot pass per task, once): about a task set's
tokens of model time per record, so ``[prospect] sample`` scores a seeded random subset of a large build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.difficulty.ifd import LlamaScorer
from pipeline.errors import UserError

COLUMNS = ("prospect_score", "prospect_gain")


@dataclass(frozen=True)
class Task:
    id: str
    instruction: str
    response: str


@dataclass(frozen=True)
class ProspectScores:
    score: np.ndarray  # share of tasks improved, per record
    gain: np.ndarray  # mean loss drop over the tasks, per record
    zero_shot: np.ndarray  # each task's response loss with no example


def load_tasks(path: Path) -> list[Task]:
    """The task set: JSON lines with ``instruction`` and ``response`` (and an ``id``)."""
    tasks = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"prospect.tasks: cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tasks.append(Task(str(row.get("id", n)), row["instruction"], row["response"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{n}: a task needs instruction and response ({exc})") from None
    if not tasks:
        raise UserError(f"{path}: no tasks")
    return tasks


def shot(instruction: str, response: str | None = None) -> str:
    """One instruction in the plain format the examples and the tasks share."""
    return f"Instruction: {instruction}\nResponse: " + (f"{response}\n\n" if response is not None else "")


def task_losses(scorer: LlamaScorer, tasks: Sequence[Task], example: tuple[str, str] | None) -> np.ndarray:
    """Each task's mean response-token loss, after ``example`` as a one-shot demonstration (or none). The
    example is evaluated once and every task continues from it."""
    bos = scorer.start()  # zero-shot and one-shot both start from it: the task's first token is scored too
    prefix = bos + (scorer.tokens(shot(*example), bos=False) if example is not None else [])
    asks = [scorer.tokens(shot(t.instruction), bos=False) for t in tasks]
    answers = [scorer.tokens(t.response, bos=False) for t in tasks]
    room = scorer.n_ctx - max(len(a) + len(r) for a, r in zip(asks, answers, strict=True))
    if len(prefix) > room:  # a long example is cut from its start: the task stays whole
        prefix = bos + prefix[len(prefix) - room + 1 :]
    losses = scorer.continuation_losses(prefix, [a + r for a, r in zip(asks, answers, strict=True)])
    return np.array([loss[len(a):].mean() for loss, a in zip(losses, asks, strict=True)])


def prospect_scores(pairs: Sequence[tuple[str, str]], tasks: Sequence[Task], scorer: LlamaScorer) -> ProspectScores:
    zero = task_losses(scorer, tasks, None)
    score, gain = np.empty(len(pairs)), np.empty(len(pairs))
    for i, pair in enumerate(pairs):
        one = task_losses(scorer, tasks, pair)
        score[i] = float((one < zero).mean())
        gain[i] = float((zero - one).mean())
    return ProspectScores(score, gain, zero)


def prospect_section(records: Sequence[dict[str, Any]], stats: dict[str, Any],
                     format_example: Callable[[dict[str, Any]], str]) -> str | None:
    """The report's Prospecting section: what was scored and at what cost, the scores' spread, and the
    records that help most and least. None when prospecting was off."""
    from pipeline.report import histogram

    if not stats.get("enabled"):
        return None
    scored = sorted((r for r in records if r.get("prospect_score") is not None),
                    key=lambda r: (r["prospect_score"], r["prospect_gain"], r["id"]))
    which = (f"Scored {stats['scored']:,} of {stats['records']:,} records: a random sample (`[prospect] sample = "
             f"{stats['sample']}`); the others have null prospect columns."
             if stats["scored"] < stats["records"] else f"Scored every record ({stats['records']:,}).")
    lines = [which, "",
             f"Each record was shown to `{stats['model']}` as the one example before each of {stats['tasks']} "
             f"tasks (`{stats['task_file']}`); `prospect_score` is the share of tasks whose response loss fell "
             f"(mean zero-shot loss {stats['zero_shot_loss']}), `prospect_gain` the mean drop. Cost: "
             f"{stats['seconds']} s, {stats['seconds_per_record']} s a record.", ""]
    if not scored:
        return "\n".join(lines)
    lines += ["```", histogram([round(10 * r["prospect_score"]) for r in scored]), "```",
              "(tenths of the task set improved)", ""]
    for title, r in (("Helps most", scored[-1]), ("Helps least", scored[0]))[: 1 if len(scored) == 1 else 2]:
        lines += [f"**{title}** (score {r['prospect_score']:.2f}, gain {r['prospect_gain']:+.3f})", "",
                  format_example(r), ""]
    return "\n".join(lines)
