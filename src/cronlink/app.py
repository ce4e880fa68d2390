"""`App`: the job registry, filled by `@app.job` and by `cronlink.toml`."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cronlink.durations import parse_duration
from cronlink.errors import ConfigError, UnknownJobError
from cronlink.jobs import DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT, Job, schedule
from cronlink.misfire import Misfire
from cronlink.records import Overlap, Tier
from cronlink.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from cronlink.automations.service import Automations
    from cronlink.config import Settings
    from cronlink.connections.service import Connections
    from cronlink.jobs import Handler


class App:
    """Holds the jobs of one deployment. `cronlink run --app package.module:app` loads it."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def add(self, job: Job) -> Job:
        if job.name in self.jobs:
            raise ConfigError(f"job {job.name!r} is defined twice")
        self.jobs[job.name] = job
        return job

    def connections(
        self, settings: Settings | None = None
    ) -> contextlib.AbstractAsyncContextManager[Connections]:
        """Connections from Python: `async with app.connections() as connections:` then
        `add`, `find`, `get`, `refresh`, `check`, `disable`, `delete`, `credentials` …

        `settings` default to ./cronlink.toml and the environment; connections are on
        (with their defaults) even without a `[connections]` section.
        """
        # Imported here: both import this module.
        from cronlink.config import load_settings
        from cronlink.config_models import ConnectionsModel
        from cronlink.connections.setup import connections_for

        chosen = settings or load_settings()
        if chosen.connections is None:
            chosen = dataclasses.replace(chosen, connections=ConnectionsModel())
        return connections_for(chosen, _with_builtins(self, chosen))

    def automations(
        self, settings: Settings | None = None
    ) -> contextlib.AbstractAsyncContextManager[Automations]:
        """Automations from Python: `async with app.automations() as automations:` then
        `add`, `find`, `get`, `pause`, `resume`, `events`, `replay` …"""
        # Imported here: both import this module.
        from cronlink.config import load_settings
        from cronlink.config_models import ConnectionsModel
        from cronlink.connections.setup import automations_for

        chosen = settings or load_settings()
        if chosen.connections is None:
            chosen = dataclasses.replace(chosen, connections=ConnectionsModel())
        return automations_for(chosen, _with_builtins(self, chosen))

    def get(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.jobs), n=3, cutoff=0.5)
            raise UnknownJobError(name, close) from None

    def job(
        self,
        schedule: str | Iterable[str] | None = None,
        *,
        name: str | None = None,
        tier: str = "light",
        timezone: str = "UTC",
        timeout: str | float | timedelta | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        max_attempts: int = 3,
        min_backoff: str | float | timedelta = "1s",
        max_backoff: str | float | timedelta = "5m",
        retry_on: Iterable[type[BaseException] | str | int] = (),
        overlap: str = "skip",
        misfire: str = "latest",
        misfire_grace: str | float | timedelta = "1h",
        jitter: str | float | timedelta = 0,
    ) -> Callable[[Handler], Handler]:
        """Register `async def handler(ctx)` as a job (the function itself is returned)."""

        def register(handler: Handler) -> Handler:
            self.add(
                build_job(
                    name=name or handler.__name__.replace("_", "-"),
                    handler=handler,
                    handler_path=f"{handler.__module__}:{handler.__qualname__}",
                    schedules=[schedule] if isinstance(schedule, str) else list(schedule or []),
                    tier=tier,
                    timezone=timezone,
                    timeout=timeout,
                    memory_limit=memory_limit,
                    max_attempts=max_attempts,
                    min_backoff=min_backoff,
                    max_backoff=max_backoff,
                    retry_on=retry_on,
                    overlap=overlap,
                    misfire=misfire,
                    misfire_grace=misfire_grace,
                    jitter=jitter,
                    description=inspect.getdoc(handler) or "",
                )
            )
            return handler

        return register


def build_job(
    *,
    name: str,
    schedules: list[str],
    tier: str = "light",
    timezone: str = "UTC",
    timeout: str | float | timedelta | None = None,
    max_attempts: int = 3,
    min_backoff: str | float | timedelta = "1s",
    max_backoff: str | float | timedelta = "5m",
    retry_on: Iterable[type[BaseException] | str | int] = (),
    overlap: str = "skip",
    misfire: str = "latest",
    misfire_grace: str | float | timedelta = "1h",
    jitter: str | float | timedelta = 0,
    **rest: Any,
) -> Job:
    """A `Job` from plain values, checked; raises `ValueError` naming what is wrong (a
    `CronSyntaxError` for a schedule that does not parse or never fires)."""
    tier_value = _choice(Tier, tier, "tier")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    twice = sorted({s for s in schedules if schedules.count(s) > 1})
    if twice:
        raise ValueError(f"schedule {twice[0]!r} is listed twice")
    now = datetime.now(UTC)
    return Job(
        name=name,
        tier=tier_value,
        schedules=tuple(
            schedule(s, timezone, parse_duration(jitter), fires_after=now) for s in schedules
        ),
        timeout=parse_duration(timeout) if timeout is not None else DEFAULT_TIMEOUT[tier_value],
        retry=RetryPolicy(
            max_attempts=max_attempts,
            min_backoff=parse_duration(min_backoff),
            max_backoff=parse_duration(max_backoff),
            retry_on=tuple(r if isinstance(r, str | int) else r.__name__ for r in retry_on),
        ),
        overlap=_choice(Overlap, overlap, "overlap"),
        misfire=_choice(Misfire, misfire, "misfire"),
        misfire_grace=parse_duration(misfire_grace),
        **rest,
    )


E = TypeVar("E", Tier, Overlap, Misfire)


def _choice(kind: type[E], value: str, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{what} must be one of {allowed}, not {value!r}") from None


def _with_builtins(app: App, settings: Settings) -> App:
    """`app` plus the built-in connection and automation jobs, which new events need."""
    from cronlink.config import connection_jobs

    assert settings.connections is not None
    merged = App()
    merged.jobs = dict(app.jobs)
    for builtin in connection_jobs(settings.connections, settings.automations):
        merged.jobs.setdefault(builtin.name, builtin)
    return merged
