"""Process logs: one JSON object a line for a log collector, or plain text in a terminal.

Every line logged while an attempt runs carries its run id and job: the worker marks the
attempt in a context variable, which tasks the handler starts inherit. The secrets cronlink
is given (`cronlink.scrubbing.configured`) are masked in every line, tracebacks included,
in any form they were quoted in, whatever code logged them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from pathlib import Path

Style = Literal["auto", "json", "text"]
STYLE_ENV = "CRONLINK_LOG_FORMAT"

_attempt: ContextVar[tuple[int, str] | None] = ContextVar("cronlink_attempt", default=None)


class attempt:
    """Lines logged inside carry `run_id` and `job` (a class, not a generator: it is
    entered for every attempt, and costs a third as much)."""

    __slots__ = ("_marked", "_token")

    def __init__(self, run_id: int, job: str) -> None:
        self._marked = (run_id, job)

    def __enter__(self) -> None:
        self._token = _attempt.set(self._marked)

    def __exit__(self, *exc: object) -> None:
        _attempt.reset(self._token)


def configure(verbose: bool, style: Style = "auto") -> None:
    """Log to stderr as `style` says ("auto": text on a terminal, JSON otherwise), unless
    the process has set up logging itself (a program embedding the command line, a test
    runner): like `logging.basicConfig`, leave its handlers alone then."""
    root = logging.getLogger()
    if root.handlers:
        return
    chosen = style
    if chosen == "auto":
        chosen = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler()
    scrub = Scrubber(configured(os.environ))
    formatter: logging.Formatter = _Json(scrub) if chosen == "json" else _Text(scrub)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def to_file(path: Path) -> None:
    """Send the log lines to `path` (JSON, appended) instead of stderr, which keeps only
    errors, as text: for a command whose terminal tells a story of its own (the demo)."""
    root = logging.getLogger()
    scrub = Scrubber(configured(os.environ))
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.ERROR)
            handler.setFormatter(_Text(scrub))
    written = logging.FileHandler(path, encoding="utf-8")
    written.setFormatter(_Json(scrub))
    root.addHandler(written)


class _Text(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        running = _attempt.get()
        if running is not None:
            line = line.replace(": ", f": [run {running[0]}] ", 1)
        return self.scrub(line)


class _Json(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.scrub(record.getMessage()),
        }
        running = _attempt.get()
        if running is not None:
            line["run_id"], line["job"] = running
        if record.exc_info:
            line["error"] = self.scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)
