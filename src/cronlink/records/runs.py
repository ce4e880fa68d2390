"""The records cronlink stores and passes around: frozen, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from cronlink.records.ai_calls import ModelSpend


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def finished(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class Reason(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    API = "api"
    ENQUEUE = "enqueue"


class Fate(StrEnum):
    """What became of one scheduled instant of a job."""

    RUN = "run"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_PAUSED = "skipped_paused"
    MISSED = "missed"


class Overlap(StrEnum):
    """What a scheduled run does when the job's previous run is still running as it is due."""

    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    REPLACE = "replace"


class Tier(StrEnum):
    LIGHT = "light"
    HEAVY = "heavy"


def alive_role(tier: Tier) -> str:
    """The heartbeat a worker of `tier` records while it runs (`worker:light`)."""
    return f"worker:{tier.value}"


@dataclass(frozen=True, kw_only=True, slots=True)
class RunError:
    type: str
    message: str
    traceback: str = ""
    reason: str = ""
    """A machine-readable cause: `timeout`, `memory`, `lease_expired`, `http_status` …"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """One execution of a job for one reason."""

    id: int
    job: str
    tier: Tier
    reason: Reason
    state: RunState
    payload: Any
    scheduled_for: datetime | None
    enqueued_at: datetime
    not_before: datetime
    attempt: int
    max_attempts: int
    overlap: Overlap
    """Applied when the run is claimed: `queue` waits for the job's running run, `skip`
    (scheduled runs) gives way to it, `replace` (scheduled runs) cancels it."""
    idempotency_key: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    lease_token: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    error: RunError | None = None
    result: str | None = None
    duration_ms: int | None = None
    peak_memory: int | None = None
    requests: int = 0
    """Outbound requests through cronlink's HTTP client, over every attempt."""
    cpu_ms: int | None = None
    """Heavy runs: CPU time of the run's processes, over every attempt."""
    memory_mib_s: float | None = None
    """Heavy runs: resident memory integrated over time (MiB x s), over every attempt."""
    traceparent: str | None = None
    """The trace its attempts continue (W3C `traceparent`): its caller's, when it sent one."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Fire:
    """The ledger entry of one (job, scheduled instant)."""

    job: str
    scheduled_for: datetime
    fate: Fate
    run_id: int | None
    recorded_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """A job's cron schedule and the scheduler's progress through it."""

    key: str
    job: str
    cron: str
    timezone: str
    cursor: datetime
    """Every instant up to and including this one has been dealt with."""
    next_at: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class NewRun:
    """What the store needs to enqueue a run."""

    job: str
    tier: Tier
    reason: Reason
    payload: Any = None
    scheduled_for: datetime | None = None
    not_before: datetime | None = None
    max_attempts: int = 1
    overlap: Overlap = Overlap.ALLOW
    dedupe_key: str | None = None
    traceparent: str | None = None


@dataclass(kw_only=True, slots=True)
class Usage:
    """What one job asked of one tier over a window: runs by how they ended, and time."""

    job: str
    tier: Tier
    runs: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    run_seconds: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueState:
    """One tier's queue as it stands: runs due and waiting, the oldest's wait, runs going."""

    due: int = 0
    oldest_age: float = 0.0
    running: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """The shared state `/metrics` reports, read in one pass over the database."""

    queues: dict[Tier, QueueState]
    connections: dict[tuple[str, str], int]
    """Connections by (state, health)."""
    models: tuple[ModelSpend, ...] = ()
    """Each chat model's calls ever, by every process."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DayUsage:
    """What one tier did on one UTC day: runs, attempts (each one an invocation on a hosted
    runner), outbound requests, and for heavy runs CPU and memory over time."""

    day: date
    tier: Tier
    runs: int
    invocations: int
    requests: int
    run_seconds: float
    cpu_seconds: float
    memory_gib_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class JobProfile:
    """One job's runs over a window, as `cronlink advise` weighs them."""

    job: str
    tier: Tier
    runs: int
    invocations: int
    failed: int
    p95_ms: int | None
    peak_memory: int | None
    """The most any of its heavy runs held (light runs share their worker's memory)."""


@dataclass(slots=True)
class Spend:
    requests: int = 0
    cpu_ms: int | None = None
    """Heavy runs: CPU time of the run's process and its children."""
    memory_mib_s: float | None = None
    """Heavy runs: resident memory integrated over the attempt (MiB x seconds)."""
