"""What the admin API answers, as pydantic models: its OpenAPI schema, and a response can
only carry the fields named here (a run's lease token, say, never leaves)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, BeforeValidator, Field

from cronlink.clock import utc_instant
from cronlink.records.automations import Automation, AutomationEvent
from cronlink.records.connections import Connection
from cronlink.records.runs import Run


def _iso(value: object) -> datetime:
    # pydantic would also take a number of seconds, or a wall time with no offset; the
    # schema (and people) say an ISO 8601 instant, and only one with an offset names one.
    try:
        if not isinstance(value, str):
            raise ValueError("is not text")
        return utc_instant(value)
    except ValueError as error:
        raise ValueError(
            f"{error}: must be an ISO 8601 instant, like 2026-11-29T12:00:00Z"
        ) from None


Instant = Annotated[datetime, BeforeValidator(_iso)]
MAX_ID = 2**31 - 1
"""The largest id both engines hold (PostgreSQL's id columns are 32-bit integers): a larger
one is a 422, not a database error nor a "not found" that took a query to learn."""
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
Name = Annotated[str, PathParam(min_length=1, max_length=200)]
"""A job's or an automation's name in a path."""
After = Annotated[int, Query(ge=0, le=MAX_ID)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID)]
"""An instant in a query: ISO 8601 only."""


class Problem(BaseModel):
    error: str
    detail: str | None = None
    suggestions: list[str] | None = None


class Schedule(BaseModel):
    cron: str
    timezone: str
    explain: str


class Job(BaseModel):
    name: str
    tier: str
    kind: str
    schedules: list[Schedule]
    next_fire: datetime | None
    paused: bool
    overridden: bool = Field(
        description="Its schedules were changed through this API (they replace the "
        "configured ones until cleared)"
    )
    last_state: str | None
    last_run_id: int | None


class RunError(BaseModel):
    type: str
    message: str
    reason: str


class RunOut(BaseModel):
    id: int
    job: str
    tier: str
    reason: str
    state: str
    payload: Any
    scheduled_for: datetime | None
    enqueued_at: datetime
    not_before: datetime
    attempt: int
    max_attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    cancel_requested: bool
    error: RunError | None
    result: str | None
    duration_ms: int | None
    peak_memory: int | None

    @classmethod
    def of(cls, run: Run) -> RunOut:
        error = None
        if run.error is not None:
            error = RunError(type=run.error.type, message=run.error.message,
                             reason=run.error.reason)  # fmt: skip
        return cls(
            id=run.id, job=run.job, tier=run.tier.value, reason=run.reason.value,
            state=run.state.value, payload=run.payload, scheduled_for=run.scheduled_for,
            enqueued_at=run.enqueued_at, not_before=run.not_before, attempt=run.attempt,
            max_attempts=run.max_attempts, started_at=run.started_at,
            finished_at=run.finished_at, worker=run.worker,
            cancel_requested=run.cancel_requested, error=error, result=run.result,
            duration_ms=run.duration_ms, peak_memory=run.peak_memory,
        )  # fmt: skip


class LogLine(BaseModel):
    at: datetime
    attempt: int
    level: str
    message: str


class RunDetail(RunOut):
    logs: list[LogLine]


class RunPage(BaseModel):
    runs: list[RunOut]
    next_before_id: int | None = Field(
        description="Pass as `before_id` for the next (older) page; null on the last one."
    )


class TriggerBody(BaseModel):
    payload: Any = None


class Queued(BaseModel):
    run_id: int
    deduplicated: bool


class AuditLine(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    client: str
    outcome: str
    detail: str


class AuditPage(BaseModel):
    entries: list[AuditLine]
    next_before_id: int | None


class JobUsage(BaseModel):
    job: str
    tier: str
    runs: int
    by_state: dict[str, int]
    run_seconds: float


class UsageReport(BaseModel):
    since: datetime
    jobs: list[JobUsage]


class NewConnection(BaseModel):
    """A connection whose tokens were obtained elsewhere (the connect flow makes its own)."""

    provider: str = Field(max_length=100)
    owner: str = Field(min_length=1, max_length=400)
    access_token: str = Field(min_length=1, max_length=10_000)
    refresh_token: str | None = Field(default=None, max_length=10_000)
    expires_in: float | None = Field(default=None, gt=0, le=10 * 366 * 86400)
    scopes: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=400)
    """The owner's name for it (`crm-main`), unique among the owner's connections."""


class ConnectionChange(BaseModel):
    """What an admin may change of a connection: its name (null takes it away)."""

    name: str | None = Field(max_length=400)


class ConnectionPage(BaseModel):
    connections: list[Connection]
    next_after_id: int | None


class AutomationPage(BaseModel):
    automations: list[Automation]
    next_after_id: int | None


class EventPage(BaseModel):
    events: list[AutomationEvent]
    next_after_id: int | None


class CronRun(BaseModel):
    run_id: int
    deduplicated: bool
    state: str
    result: str | None = None
    detail: str | None = None
    """Why `?wait=true` answered at once (no worker of the run's tier is running)."""


class Tick(BaseModel):
    started: int
    missed: int


class Health(BaseModel):
    status: str
    database: str | None = None
    scheduler: str | None = None


class NewSchedule(BaseModel):
    cron: str = Field(min_length=1, max_length=200, examples=["*/5 * * * *"])
    timezone: str = Field(default="UTC", min_length=1, max_length=100)


class NewSchedules(BaseModel):
    schedules: list[NewSchedule] = Field(min_length=1, max_length=20)
