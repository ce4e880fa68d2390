"""`App`: the job registry, filled by `@app.job` and by `cronlink.toml`."""

from __future__ import annotations

import difflib
import inspect
from datetime import timedelta
from typing import TYPE_CHECKING

from cronlink.errors import ConfigError, UnknownJobError
from cronlink.jobs import DEFAULT_MEMORY_LIMIT, Job, build_job

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

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
