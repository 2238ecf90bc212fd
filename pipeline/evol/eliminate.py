"""Elimination evolving: pure rules that decide whether an evolution failed, and why.

The rules follow the paper's elimination step (WizardLM, §3.3) and add the
checks a small evolver needs. An evolved instruction fails when

- nothing could be read from the reply (``empty``);
- it leaks the template: "#Rewritten Prompt#", "given prompt" and the like (``template_leak``);
- it repeats the evolving prompt's own instructions instead of following them (``copied_prompt``);
- its length is out of bounds, or it grew or shrank too much against its parent (``length_out_of_bounds``);
- it asks nothing of a reader: no sentence is a question or a request, so it is a statement or an
  answer ("We should wash our hands before eating, as ..."), or it asks for a prompt rather than a task
  (``not_an_instruction``);
- it is near-identical to its parent, or the optional LLM judge calls them Equal (``no_information_gain``).

Its response fails when it is a refusal or apology shorter than 80 words
(``refusal``), contains only punctuation and stop words (``stopwords_only``),
is too short (``response_too_short``), was cut off at the token limit
(``response_truncated``), or mostly repeats the instruction's words (``response_copies_instruction``).

Each rule returns ``(reason, detail)`` or ``None``; the first failing rule wins.
"""

from __future__ import annotations

import re
from functools import cache

from pipeline.evol.operations import TEMPLATE_MARKERS, Operation
from pipeline.paths import VOCAB_DIR
from pipeline.text import normalize, words

Verdict = tuple[str, str] | None

_LABEL = re.compile(
    r"^\s*(?:#+\s*)?(?:the\s+)?(?:rewritten|created|new|evolved)\s+(?:prompt|instruction)\s*#*\s*[:\-]\s*",
    re.IGNORECASE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"
_REFUSAL = re.compile(r"\b(sorry|apologi[sz]e|i can ?not|i can't|i am unable|i'm unable|as an ai)\b", re.IGNORECASE)


def extract_instruction(text: str) -> str | None:
    """The evolved instruction in a reply: a leading "Rewritten prompt:" label and wrapping quotes removed.

    Only a label at the very start is formatting; the same words anywhere else
    are a template leak, which elimination rejects rather than repairs.
    """
    t = _LABEL.sub("", text.strip(), count=1).strip()
    if len(t) >= 2 and t[0] in _QUOTES and t[-1] in _QUOTES and t[0] not in t[1:-1]:
        t = t[1:-1].strip()
    return t or None


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word sets: 1.0 for the same words in any order."""
    wa, wb = set(words(a)), set(words(b))
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def containment(text: str, source: str) -> float:
    """Share of the text's distinct words that also occur in the source."""
    wt = set(words(text))
    return len(wt & set(words(source))) / len(wt) if wt else 1.0


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def template_overlap(child: str, parent: str, op: Operation, n: int = 4) -> float:
    """Share of the child's new word n-grams (those not in the parent) that come from the template's own text."""
    fresh = _ngrams(words(child), n) - _ngrams(words(parent), n)
    if not fresh:
        return 0.0
    return len(fresh & _ngrams(words(op.instructions), n)) / len(fresh)


# A sentence asks for something when it is a question, or opens (after a courtesy or a short lead-in
# such as "In three sentences,") with a verb that requests work. The verbs are those of the shipped seed
# pool and of Evol-Instruct's own examples; a rewrite that asks in another way is rare for a small evolver,
# and the rule only ever rejects, with the sentence it read as its detail.
_REQUEST_VERBS = frozenset("""
add analyse analyze answer arrange build calculate change check choose classify compare compose compute
convert count create decide define describe design determine develop draft draw estimate evaluate explain
figure find fix generate give go help identify imagine implement improve include invent label list make
match name outline paraphrase pick plan predict prepare prove provide rank read recommend rewrite say
share show simplify solve sort state suggest summarise summarize tell translate turn use work write
""".split())
_ASKING = re.compile(
    r"\b(?:can you|could you|would you|will you|i want you|i would like|i'd like|i need|help me|let's|let us"
    r"|your task|you should|you must|make sure|be sure)\b", re.IGNORECASE)
_COURTESY = frozenset({"please", "now", "then", "also", "and", "next", "first", "finally", "briefly", "kindly"})


def asks_for_something(text: str) -> bool:
    """Whether any sentence of ``text`` is a question or a request (see ``_REQUEST_VERBS``)."""
    if "?" in text or _ASKING.search(text):
        return True
    for sentence in re.split(r"(?<=[.!;:])\s+|\n+", text):
        clause = sentence.split(",")[-1] if "," in sentence[:60] else sentence  # "In two sentences, explain..."
        for candidate in (sentence, clause):
            ws = [w for w in words(candidate) if w not in _COURTESY]
            if ws and ws[0] in _REQUEST_VERBS:
                return True
    return False


def check_evolution(parent: str, child: str | None, op: Operation, *, min_words: int, max_words: int,
                    max_growth: float, max_similarity: float, max_template_overlap: float) -> Verdict:
    """Why the evolved instruction fails, or None when it survives."""
    if not child:
        return "empty", "no instruction in the reply"
    low = child.lower()
    if leaked := next((m for m in TEMPLATE_MARKERS if m in low), None):
        return "template_leak", repr(leaked)
    if (share := template_overlap(child, parent, op)) > max_template_overlap:
        return "copied_prompt", f"{share:.0%} of its new 4-grams repeat the evolving prompt"
    if not asks_for_something(child) and asks_for_something(parent):
        return "not_an_instruction", f"no sentence asks for anything: {child[:80]!r}"
    if re.search(r"\bprompts?\b", low) and not re.search(r"\bprompts?\b", parent.lower()):
        return "not_an_instruction", "asks about a prompt, not for a task"
    n, p = len(words(child)), max(len(words(parent)), 1)
    if n < min_words or n > max_words:
        return "length_out_of_bounds", f"{n} words, outside {min_words}..{max_words}"
    # in-depth may add 10 to 20 words; in-breadth asks for a similar length: both are bounded by the ratio
    if not (1 / max_growth <= n / p <= max_growth):
        return "length_out_of_bounds", f"{n} words from {p}: x{n / p:.1f}, outside x{1 / max_growth:.2f}..x{max_growth:g}"
    if normalize(child) == normalize(parent):
        return "no_information_gain", "same text as the parent"
    if (sim := similarity(child, parent)) >= max_similarity:
        return "no_information_gain", f"word overlap with the parent {sim:.2f} >= {max_similarity}"
    return None


@cache
def stop_words() -> frozenset[str]:
    """The shipped list of English function words (articles, pronouns, auxiliaries...)."""
    text = (VOCAB_DIR / "function_words.txt").read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines()
                     if not line.startswith("#") for w in words(line))


def check_response(instruction: str, response: str, finish_reason: str, *, min_words: int,
                   max_refusal_words: int = 80, allow_truncated: bool = False) -> Verdict:
    """Why the response to an evolved instruction is degenerate, or None when it is usable."""
    toks = words(response)
    if (m := _REFUSAL.search(response)) and len(toks) < max_refusal_words:
        return "refusal", f"{m.group(0)!r} in a {len(toks)}-word response"
    if not toks or all(t in stop_words() for t in toks):
        return "stopwords_only", repr(response[:60])
    if len(toks) < min_words:
        return "response_too_short", f"{len(toks)} words < {min_words}"
    if finish_reason == "length" and not allow_truncated:
        return "response_truncated", "hit max_tokens"
    if (share := containment(response, instruction)) >= 0.8:
        return "response_copies_instruction", f"{share:.0%} of the response's words are the instruction's"
    return None
