"""A failed build says one line on the console; what Prefect logs of the failure goes to a file.

Prefect logs a task's or flow's exception as it unwinds (the traceback of the task, then of the
flow, then the failed states): about 120 lines before the command line says the one that matters
(``tinyforge: error: ...``). In the CLI those records go to a log file under the build's folder
instead, named on that one line; everything else (progress, warnings) stays on the console, and the
Prefect UI still gets every record through Prefect's own API handler.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import TracebackType

_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def _about_a_failure(record: logging.LogRecord) -> bool:
    if record.exc_info or record.levelno >= logging.ERROR:
        return True
    return record.name in _RUN_LOGGERS and record.getMessage().startswith(("Finished in state Failed",
                                                                           "Finished in state Crashed"))


class FailureLog(logging.Filter):
    """While installed (a context manager), the console handlers of the root logger pass on every
    record but those about a failure, which are written to ``folder/<time>.log`` (made on the first)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = folder / time.strftime("failed-%Y%m%dT%H%M%SZ.log", time.gmtime())
        self._file: logging.FileHandler | None = None
        self._consoles: list[logging.Handler] = []

    @property
    def written(self) -> bool:
        return self._file is not None

    def filter(self, record: logging.LogRecord) -> bool:
        if not _about_a_failure(record):
            return True
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = logging.FileHandler(self.path, encoding="utf-8")
            self._file.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s - %(message)s"))
        self._file.handle(record)
        return False

    def __enter__(self) -> FailureLog:
        self._consoles = [h for h in logging.getLogger().handlers
                          if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
        for handler in self._consoles:
            handler.addFilter(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for handler in self._consoles:
            handler.removeFilter(self)
        if self._file is not None:
            self._file.close()
            if exc is not None:
                exc.add_note(f"details: {self.path}")
