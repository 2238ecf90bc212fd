"""An LLM judge: a rubric per corpus kind, one verdict per record, scores that are never guessed.

A :class:`Rubric` names the criteria a judge grades (an integer 1-10, or one
of a few labels: the TinyStories age groups) and how a record is shown to
it. :func:`judge_records` asks the judge for a JSON verdict on every record,
in one batch of requests; a reply that cannot be read is asked again, with
the reply and what was wrong with it as the next turns of the chat (so a
retry differs from the first try even at temperature 0), up to ``retries``
times; a record whose verdict still cannot be read keeps ``None`` scores and
the reason, never a default score.

Every request goes through the caller's backend, in tinyforge the response
cache, so a killed build asks nothing twice. The rubrics themselves are in
each kind's ``rubric.py`` (``pipeline.tinystories.rubric``); the stage that applies thresholds is
``pipeline.stages.judge``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, field_validator

from pipeline.config import Section
from pipeline.fingerprint import digest
from pipeline.llm.config import BackendConfig, SamplingConfig, default_backend_kind
from pipeline.llm.types import Backend, ChatRequest, Message, SamplingParams
from pipeline.structured import object_schema, objects


class JudgeConfig(Section):
    """An LLM judge grades every record on its kind's rubric (the kind's ``rubric.py``; see docs/judge.md).

    Off by default: the embedded 135M model is no judge. Point ``[judge.backend]`` at a bigger model than
    the generator; without it the judge is the recipe's own backend."""

    enabled: bool = False
    backend: BackendConfig | None = Field(None, description="the judge's model (default: the recipe's backend)")
    sampling: SamplingConfig = SamplingConfig(temperature=0.0, max_tokens=96, repeat_penalty=1.0)
    min: dict[str, int] = Field(default_factory=dict, description="criterion -> lowest score kept, e.g. "
                                "{consistency = 6}; below it a record is rejected as judge:<criterion>")
    retries: int = Field(2, ge=0, le=5, description="times an unreadable verdict is asked for again, with what "
                         "was wrong; after that the record keeps no scores and the reason, never a guess")
    max_chars: int = Field(4000, ge=200, le=200_000, description="a longer text is cut before the judge reads it")

    _default_kind = field_validator("backend", mode="before")(staticmethod(default_backend_kind))

    @field_validator("min")
    @classmethod
    def _scores(cls, v: dict[str, int]) -> dict[str, int]:
        if bad := [k for k, x in v.items() if not 1 <= x <= 10]:
            raise ValueError(f"a threshold is a score from 1 to 10 ({bad[0]} = {v[bad[0]]})")
        return v

Score = int | str  # an integer grade, or a label (age group)


@dataclass(frozen=True)
class Criterion:
    name: str
    question: str  # what the judge is asked about this criterion
    labels: tuple[str, ...] = ()  # a label criterion; empty: an integer from 1 to 10
    low: int = 1
    high: int = 10

    @property
    def numeric(self) -> bool:
        return not self.labels

    def json_schema(self) -> dict[str, Any]:
        if self.labels:
            return {"type": "string", "enum": list(self.labels)}
        return {"type": "integer", "enum": list(range(self.low, self.high + 1))}

    def scale(self) -> str:
        return " | ".join(self.labels) if self.labels else f"{self.low}-{self.high}"

    def read(self, value: object) -> Score | str:
        """The score, or why ``value`` is not one (a str starting with ``!``)."""
        if self.labels:
            text = str(value).strip().strip('"').upper()[:1] if value is not None else ""
            return text if text in self.labels else f"!{self.name} = {value!r} is not one of {self.scale()}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return f"!{self.name} = {value!r} is not a number"
        try:
            number = float(value)
        except ValueError:
            return f"!{self.name} = {value!r} is not a number"
        if number != int(number) or not self.low <= number <= self.high:
            return f"!{self.name} = {value!r} is not an integer from {self.low} to {self.high}"
        return int(number)


@dataclass(frozen=True)
class Rubric:
    """What a judge grades in one kind's records: ``subject`` ("a short story for young children"),
    the criteria, and ``present(record)``, the record as the judge reads it."""

    kind: str
    subject: str
    criteria: tuple[Criterion, ...]
    present: Callable[[dict[str, Any]], str] = field(compare=False)
    notes: str = ""  # said before the criteria: what the grader should know about the texts

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.criteria)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.criteria if c.numeric)

    def columns(self) -> tuple[str, ...]:
        """The record columns a judged record gets, one per criterion."""
        return tuple(column(n) for n in self.names)

    def schema(self) -> dict[str, Any]:
        return object_schema(**{c.name: c.json_schema() for c in self.criteria})

    def example(self) -> str:
        # Placeholders, not numbers: a small model copies an example's scores (shown "5", the 135M model
        # gave every story 5 on every criterion).
        return "{" + ", ".join(f'"{c.name}": ' + (f'"<{"|".join(c.labels)}>"' if c.labels else f"<{c.scale()}>")
                               for c in self.criteria) + "}"

    def prompt(self, record: dict[str, Any]) -> str:
        lines = [f"Grade the following {self.subject}.", ""]
        if self.notes:
            lines += [self.notes, ""]
        lines += [self.present(record), "", "Grade it on each criterion:"]
        lines += [f"- {c.name} ({c.scale()}): {c.question}" for c in self.criteria]
        lines += ["", f"Reply with only a JSON object of this form: {self.example()}"]
        return "\n".join(lines)

    def template_id(self) -> str:
        """Names the rubric's wording, so a change to it re-judges (and the card says which one graded)."""
        return f"judge-{self.kind}@" + digest({"subject": self.subject, "notes": self.notes, "criteria": [
            (c.name, c.question, c.labels, c.low, c.high) for c in self.criteria]})[:12]


def column(criterion: str) -> str:
    return f"judge_{criterion}"


@dataclass(frozen=True)
class Verdict:
    """One record's verdict: every criterion's score, or None and the reason no reply could be read."""

    scores: Mapping[str, Score] | None
    error: str | None
    attempts: int
    raw: str  # the last reply


def parse_verdict(text: str, rubric: Rubric) -> dict[str, Score] | str:
    """The scores in a judge's reply, or why there are none.

    A JSON object with every criterion is read first (the form a structured-output backend returns); a
    reply without one may still say ``grammar: 7`` on lines of its own. Anything else is not a verdict.
    """
    best: str | None = None
    for obj in objects(text):
        if not any(n in obj for n in rubric.names):
            continue
        scores, problems = _read_all(rubric, obj)
        if not problems:
            return scores
        best = best or "; ".join(problems)
    if best is not None:
        return best
    found = {}
    for c in rubric.criteria:
        m = re.search(rf"(?im)^\W*{re.escape(c.name)}\W*[:=]\s*\"?([A-Za-z0-9.]+)", text)
        if m:
            found[c.name] = m.group(1)
    if found:
        scores, problems = _read_all(rubric, found)
        return scores if not problems else "; ".join(problems)
    excerpt = " ".join(text.split())[:80]
    return f"no verdict in the reply ({excerpt!r})" if excerpt else "an empty reply"


def _read_all(rubric: Rubric, values: Mapping[str, object]) -> tuple[dict[str, Score], list[str]]:
    scores, problems = {}, []
    for c in rubric.criteria:
        if c.name not in values:
            problems.append(f"{c.name} is missing")
            continue
        v = c.read(values[c.name])
        if isinstance(v, str) and v.startswith("!"):
            problems.append(v[1:])
        else:
            scores[c.name] = v
    return scores, problems


def judge_records(records: Sequence[dict[str, Any]], rubric: Rubric, backend: Backend, params: SamplingParams,
                  *, seeds: Sequence[int], retries: int, max_chars: int) -> list[Verdict]:
    """A verdict for every record (``seeds[i]``: record i's sampling seed): all first tries in one batch,
    then each retry for those still unread."""
    chats = [[Message("user", rubric.prompt(_clip(r, max_chars)))] for r in records]
    verdicts: list[Verdict | None] = [None] * len(records)
    pending = list(range(len(records)))
    schema = rubric.schema()
    for attempt in range(retries + 1):
        requests = [ChatRequest(tuple(chats[i]), params, seed=seeds[i], json_schema=schema) for i in pending]
        replies = backend.generate(requests)
        still = []
        for i, (reply,) in zip(pending, replies, strict=True):
            parsed = parse_verdict(reply.text, rubric)
            if isinstance(parsed, dict):
                verdicts[i] = Verdict(parsed, None, attempt + 1, reply.text)
                continue
            if attempt == retries:
                verdicts[i] = Verdict(None, f"no verdict after {attempt + 1} tries: {parsed}", attempt + 1,
                                      reply.text)
                continue
            chats[i] += [Message("assistant", reply.text),
                         Message("user", f"That reply could not be read: {parsed}. Reply with only a JSON object "
                                         f"of this form: {rubric.example()}")]
            still.append(i)
        pending = still
        if not pending:
            break
    return [v for v in verdicts if v is not None]


def _clip(record: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """The record with its long text fields cut to ``max_chars`` (a judge's context is finite)."""
    return {k: v[:max_chars] + " [...]" if isinstance(v, str) and len(v) > max_chars else v
            for k, v in record.items()}


def failed_threshold(scores: Mapping[str, Score] | None, minimum: Mapping[str, int], rubric: Rubric,
                     ) -> str | None:
    """The first criterion (in rubric order) whose score is below its minimum; ``no_verdict`` when there
    is a minimum and no score at all; None when the record passes."""
    if not minimum:
        return None
    if scores is None:
        return "no_verdict"
    for name in rubric.names:
        if name in minimum and int(scores[name]) < minimum[name]:
            return name
    return None


def scores_text(scores: Mapping[str, Score] | None) -> str:
    return "no scores" if scores is None else " ".join(f"{k}={v}" for k, v in scores.items())


def judge_section(records: Sequence[dict[str, Any]], rubric: Rubric, stats: Mapping[str, Any],
                  format_example: Callable[[dict[str, Any]], str]) -> str | None:
    """The report's Judge section: how many verdicts were read, each criterion's score distribution over
    the published records, and the best and worst of them by mean score. None when the judge was off."""
    if not stats.get("enabled"):
        return None
    lines = [f"Judge `{stats['model']}`, rubric `{stats['rubric']}` (the kind's rubric.py): {stats['judged']} records "
             f"judged, {stats['retried']} asked again, {stats['unread']} without a readable verdict "
             f"(kept without scores, or rejected as `judge:no_verdict` under a threshold). Thresholds: "
             + (", ".join(f"{k} >= {v}" for k, v in stats["min"].items()) or "none (scored only)") + ".", ""]
    numeric = [c for c in rubric.criteria if c.numeric]
    scale = range(min(c.low for c in numeric), max(c.high for c in numeric) + 1) if numeric else range(0)
    if numeric:
        lines += ["Published records by score:", "",
                  "| criterion | " + " | ".join(map(str, scale)) + " | no score | mean |",
                  "|---|" + "---|" * (len(scale) + 2)]
        for c in numeric:
            values = [r.get(column(c.name)) for r in records]
            scored = [v for v in values if v is not None]
            mean = f"{sum(scored) / len(scored):.2f}" if scored else "-"
            lines.append(f"| {c.name} | " + " | ".join(str(values.count(s)) for s in scale)
                         + f" | {values.count(None)} | {mean} |")
        lines.append("")
    for c in rubric.criteria:
        if c.labels:
            values = [r.get(column(c.name)) for r in records]
            lines += [f"{c.name}: " + ", ".join(f"{label} {values.count(label)}" for label in c.labels)
                      + f", no score {values.count(None)}", ""]

    def mean(r: dict[str, Any]) -> float:
        return sum(r[column(c.name)] for c in numeric) / len(numeric)

    graded = sorted((r for r in records if numeric and all(r.get(column(c.name)) is not None for c in numeric)),
                    key=lambda r: (mean(r), r["id"]))
    if graded and mean(graded[0]) == mean(graded[-1]):
        return "\n".join([*lines, f"Every graded record got the same mean score ({mean(graded[0]):.2f}): the judge "
                                  "does not tell these records apart.", ""])
    best = graded[::-1][:2]
    for title, picks in (("Best", best), ("Worst", [r for r in graded[:2] if r not in best])):
        for r in picks:
            scores = " ".join(f"{n}={r.get(column(n))}" for n in rubric.names)
            lines += [f"**{title}** ({scores}): {format_example(r)}", ""]
    return "\n".join(lines)
