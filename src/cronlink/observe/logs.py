"""Process logs: one JSON object a line for a log collector, or plain text in a terminal.

Every line logged while an attempt runs carries its run id and job: the worker marks the
attempt in a context variable, which tasks the handler starts inherit. The values of the
secrets cronlink is given (`CRON_SECRET`, `CRONLINK_SECRET_KEY`, the database password) are
masked in every line, tracebacks included, whatever code logged them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

Style = Literal["auto", "json", "text"]
STYLE_ENV = "CRONLINK_LOG_FORMAT"
MASK = "[redacted]"
SECRET_ENVS = ("CRON_SECRET", "CRONLINK_SECRET_KEY")

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
    secrets = _secrets(os.environ)
    formatter: logging.Formatter = _Json(secrets) if chosen == "json" else _Text(secrets)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _secrets(env: os._Environ[str] | dict[str, str]) -> list[str]:
    found = [
        part.strip() for name in SECRET_ENVS for part in env.get(name, "").split(",")
        if len(part.strip()) >= 8
    ]  # fmt: skip
    password = urlsplit(env.get("DATABASE_URL", "")).password
    if password:
        found.append(password)
    # The longest first: a secret that contains another is masked whole.
    return sorted(set(found), key=len, reverse=True)


def _masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class _Text(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        running = _attempt.get()
        if running is not None:
            line = line.replace(": ", f": [run {running[0]}] ", 1)
        return _masked(line, self.secrets)


class _Json(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _masked(record.getMessage(), self.secrets),
        }
        running = _attempt.get()
        if running is not None:
            line["run_id"], line["job"] = running
        if record.exc_info:
            line["error"] = _masked(self.formatException(record.exc_info), self.secrets)
        return json.dumps(line, ensure_ascii=False)
