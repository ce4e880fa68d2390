"""What carries over between cronlink and another scheduler: an import's `[[jobs]]`
tables for cronlink.toml, an export's definitions, and, for both, the list of what could
not come along (never dropped silently)."""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import tomli_w
import yaml
from pydantic import ValidationError

from cronlink.config import read_file
from cronlink.config_models import JobModel
from cronlink.durations import format_duration
from cronlink.errors import ConfigError
from cronlink.jobs import DEFAULT_TIMEOUT
from cronlink.progress import Progress, silent
from cronlink.records.runs import Tier

APP_URL = "${APP_URL}"
"""Where imported HTTP targets call by default: the environment's APP_URL."""
SECRET_HEADER = "Bearer ${CRON_SECRET}"
"""How imported HTTP targets authenticate: the secret is read from the environment."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Binding:
    """Where imported schedules send their runs: a Python handler named by the user
    (`module:{name}`, the job's name as an identifier), else `POST {app_url}/cron/{name}`."""

    handler: str | None = None
    app_url: str = APP_URL

    def bind(self, name: str, body: str | None = None) -> dict[str, Any]:
        """The handler or target keys of job `name`; `body` is sent to a target."""
        if self.handler is not None:
            return {"handler": self.handler.replace("{name}", identifier(name))}
        target: dict[str, Any] = {
            "url": f"{self.app_url.rstrip('/')}/cron/{name}",
            "method": "POST",
            "headers": {"Authorization": SECRET_HEADER},
        }
        if body is not None:
            target["body"] = body
        return {"target": target}


@dataclass(slots=True)
class Imported:
    """Jobs read from another scheduler's definitions, in cronlink.toml's terms."""

    source: str
    """The file read, named in every message."""
    jobs: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """What was not carried over, each as `what: why`."""
    progress: Progress = silent
    """Told as each job is added (thousands take a while to check)."""
    _names: set[str] = field(default_factory=set)

    def add(self, job: dict[str, Any]) -> None:
        """Add `job` once it reads as a valid `[[jobs]]` table (else ConfigError)."""
        name = job.get("name", "?")
        if name in self._names:
            raise ConfigError(f"{self.source}: two jobs would be named {name!r}")
        try:
            JobModel.model_validate(job)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise ConfigError(
                f"{self.source}: job {name!r} would not load ({where}: {problem['msg']})"
            ) from None
        self.jobs.append(job)
        self._names.add(name)
        self.progress(f"importing {self.source}", len(self.jobs), None)

    def leave_out(self, what: str, why: str) -> None:
        self.left_out.append(f"{what}: {why}")


@dataclass(frozen=True, slots=True)
class Exported:
    """Another scheduler's definitions of cronlink jobs."""

    text: str
    left_out: list[str] = field(default_factory=list)
    """Jobs or settings not carried over, each as `what: why`."""


def identifier(name: str) -> str:
    """`name` as a Python identifier, for handler templates (`sync-crm` → `sync_crm`)."""
    cleaned = re.sub(r"\W", "_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def job_name(text: str) -> str:
    """A job name (cronlink's pattern) made from another scheduler's name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]+", "-", text).strip("-_.:")
    return cleaned[:200] or "job"


def tier_for(timeout: float) -> dict[str, Any]:
    """The tier and timeout keys of a job whose attempts may take `timeout` seconds: a
    light run shares the worker's event loop, so anything over its default runs heavy."""
    heavy = timeout > DEFAULT_TIMEOUT[Tier.LIGHT].total_seconds()
    return {"tier": "heavy" if heavy else "light", "timeout": seconds_text(timeout)}


def seconds_text(seconds: float) -> str:
    """A duration as cronlink.toml writes it (`90s`, `5m`, `1.5s`)."""
    return format_duration(timedelta(seconds=seconds))


def yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what is wrong in a YAML text, without quoting it: YAML's own message
    quotes the line, and the line may hold a secret."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return where + (getattr(error, "problem", None) or "unreadable")


def append_jobs(path: Path, imported: Imported) -> None:
    """Append the jobs to `path` as `[[jobs]]` tables, keeping what it holds (comments
    included); refuse a name it already has. The file (a link's target) is replaced whole,
    with its permissions, or not at all; nothing is written when there is nothing to add."""
    if not imported.jobs:
        return
    path = path.resolve()
    before = path.read_text() if path.exists() else ""
    if before:
        existing = {job.name for job in read_file(path).jobs}
        clashes = sorted(existing & {job["name"] for job in imported.jobs})
        if clashes:
            raise ConfigError(f"{path} already has jobs named {', '.join(clashes)}")
    added = tomli_w.dumps({"jobs": imported.jobs})
    after = f"{before.rstrip()}\n\n# Imported from {imported.source}\n{added}".lstrip()
    try:
        tomllib.loads(after)
    except tomllib.TOMLDecodeError as error:  # e.g. its jobs are an inline array
        raise ConfigError(f"{path}: the jobs cannot be appended ({error})") from None
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".toml") as handle:
        staged = Path(handle.name)
        try:
            handle.write(after)
        except OSError as error:
            staged.unlink()
            raise ConfigError(f"{path}: the jobs were not added ({error.strerror})") from None
    staged.chmod(mode)
    os.replace(staged, path)
