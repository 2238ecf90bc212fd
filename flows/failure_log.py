"""A failed build says one line on the console; what Prefect logs of the failure goes to a file.

Prefect logs a task's or flow's exception as it unwinds (the traceback of the task, then of the
flow, then the failed states): about 120 lines before the command line says the one that matters
(``tinyforge: error: ...``). In the CLI those records go to a log file under the build's folder
instead, named on that one line; everything else (progress, warnings) stays on the console, and the
Prefect UI still gets every record through Prefect's own API handler.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from types import TracebackType

_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_FORMAT = logging.Formatter("%(asctime)s | %(levelname)s | %(name)s - %(message)s")


def _about_a_failure(record: logging.LogRecord) -> bool:
    if record.exc_info or record.levelno >= logging.ERROR:
        return True
    return record.name in _RUN_LOGGERS and record.getMessage().startswith(("Finished in state Failed",
                                                                           "Finished in state Crashed"))


class FailureLog(logging.Filter):
    """While installed (a context manager), the console handlers of the root logger pass on every
    record but those about a failure. Those are kept and written when the block ends, to
    ``folder/failed-<time>.log``, or to the temporary directory when the folder cannot take them (a full
    disk is one of the failures the log must survive); an exception leaving the block is told where."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = folder / time.strftime("failed-%Y%m%dT%H%M%SZ.log", time.gmtime())
        self.fallback = Path(tempfile.gettempdir()) / f"tinyforge-{folder.parent.name}-{self.path.name}"
        self.lines: list[str] = []
        self._consoles: list[logging.Handler] = []
        self.written: Path | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not _about_a_failure(record):
            return True
        self.lines.append(_FORMAT.format(record))
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
        if not self.lines:
            return
        for path in (self.path, self.fallback):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
            except OSError:
                path.unlink(missing_ok=True)
                continue
            self.written = path
            break
        if exc is not None and self.written is not None:
            exc.add_note(f"details: {self.written}")
