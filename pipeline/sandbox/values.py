"""What a program's report may carry back to the host, checked on the host's side.

The report comes from the program's own process, so it is as hostile as the program: the
child's checks before writing it run where the program could have changed them (an ``int``
subclass whose ``__abs__`` lies, a patched ``json``). So the host reads the report with its
own parser and accepts only plain JSON values of bounded shape:

- ``None``, ``bool``, ``str``, ``list`` and ``dict`` (string keys), and
- integers within 64 bits, finite floats (``NaN``, ``Infinity`` and ``1e400`` are refused),
- nested at most ``MAX_DEPTH`` levels,

and every string (values, keys, the error and the repr) is made valid UTF-8: a lone
surrogate (``"\\ud800"``, which JSON can escape but UTF-8 cannot encode) becomes U+FFFD, so
a record built from it can always be written to Parquet. Anything else is a reason, never an
exception.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pipeline.sandbox.result import STATUSES

MAX_DEPTH = 100  # deepest nesting accepted in a result (the worker's child enforces it too)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what a Parquet int64 column holds
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # how one can reach us: a JSON escape


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NotJson(f"the program's result holds {name}, which JSON does not allow")


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: each lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _clean(value: Any) -> Any:
    """``value`` with every string (dict keys included) made valid UTF-8."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    return value


def value_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``value`` (as ``json.loads`` made it) cannot be a result, or None. Iterative: a result
    may be nested far deeper than Python's recursion limit."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > max_depth:
            return f"the program's result is nested deeper than {max_depth} levels"
        t = type(v)
        if t is int:
            if not INT_MIN <= v <= INT_MAX:
                return "the program's result holds an integer outside 64 bits"
        elif t is float:
            if not math.isfinite(v):
                return "the program's result holds a number too large for a float"
        elif t is list:
            stack.extend((x, depth + 1) for x in v)
        elif t is dict:
            stack.extend((x, depth + 1) for x in v.values())
        elif v is not None and t not in (str, bool):
            return f"the program's result holds a {t.__name__}"
    return None


def read_report(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The child's JSON report as (report, None), or (None, why) when it cannot be used.

    A usable report is a dict with a known ``status``, ``error`` and ``value_repr`` as text or
    null, and a ``value`` that passes :func:`value_problem`; its strings are valid UTF-8."""
    try:
        report = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except _NotJson as exc:
        return None, str(exc)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, "the program's result could not be read (not JSON, or nested too deeply)"
    if not (type(report) is dict and report.get("status") in STATUSES
            and type(report.get("error")) in (str, type(None))
            and type(report.get("value_repr")) in (str, type(None))):
        return None, "the program's result had the wrong shape"
    if (problem := value_problem(report.get("value"))) is not None:
        return None, problem
    if _ESCAPED_SURROGATE.search(raw):  # rare: only then is a rebuild worth its cost
        report = _clean(report)
    return report, None
