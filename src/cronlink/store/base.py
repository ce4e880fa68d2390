"""The `Store` interface: every verb cronlink needs from its database, engine-neutral.

Engines differ in how they claim work and insert-or-ignore, so the seam is here, at the
verbs, not at SQL strings. Every instant passed in or returned is timezone-aware UTC.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from cronlink.progress import Progress, silent
from cronlink.records.runs import Spend
from cronlink.store import metric_queries, migrate, queries, rate_buckets, usage_queries
from cronlink.store.ai_store import AiStore
from cronlink.store.alert_store import AlertStore
from cronlink.store.audit_store import AuditStore
from cronlink.store.automation_store import AutomationStore
from cronlink.store.connection_store import ConnectionStore
from cronlink.store.heartbeat_store import HeartbeatStore
from cronlink.store.override_store import OverrideStore
from cronlink.store.signature_store import SignatureStore
from cronlink.store.token_store import TokenStore
from cronlink.store.verbs import reads, writes

T = TypeVar("T")

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from sqlalchemy import Connection

    from cronlink.records.audit import AuditEntry
    from cronlink.records.connections import Sealed
    from cronlink.records.runs import (
        NewRun,
        Run,
        RunError,
        RunState,
        Schedule,
        Tier,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Tick:
    """One due instant of a schedule, as the scheduler decided to treat it."""

    run: NewRun
    """The run to start; its `scheduled_for` is the instant (the ledger key)."""
    missed: bool = False
    """Beyond the misfire policy: recorded as missed, no run."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleAdvance:
    """Move a schedule's cursor once its ticks are recorded."""

    key: str
    cursor: datetime
    next_at: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """How an attempt ended, as the worker reports it."""

    state: RunState
    error: RunError | None = None
    result: str | None = None
    retry_at: datetime | None = None
    """Queue again at this instant instead of finishing (a retry decision)."""
    duration_ms: int | None = None
    peak_memory: int | None = None
    logs: tuple[tuple[datetime, str, str], ...] = ()
    spend: Spend = field(default_factory=Spend)
    """What the attempt spent (added to the run's totals over its attempts)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimRequest:
    """What a worker asks for when it claims: up to `limit` runs of `tier` under a lease."""

    worker: str
    tier: Tier
    limit: int
    lease: timedelta


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    """An attempt that ended, with the lease it ran under."""

    run_id: int
    lease_token: str
    outcome: Outcome


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    held: list[bool]
    claimed: list[Run]


@dataclass(frozen=True, kw_only=True, slots=True)
class SavedRefresh:
    """What a refresh stores, fenced by the lease `token` and the `version` it read."""

    token: str
    version: int
    ciphertext: str = field(repr=False)
    key_id: str
    expires_at: datetime | None
    refresh_due_at: datetime | None
    now: datetime
    event: str
    follow_up: NewRun | None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFilter:
    job: str | None = None
    state: RunState | None = None
    since: datetime | None = None
    limit: int = 50
    before_id: int | None = None


class Store(abc.ABC):
    """Durable state of jobs, schedules, runs and the ledger of scheduled instants; the
    connection and automation domains' verbs are on `store.connections` and
    `store.automations`. The verbs both engines run alike are declared over `transact`
    (their contract is their SQL's docstring, in `queries.py`); the rest are each
    engine's own."""

    url: str

    @property
    def connections(self) -> ConnectionStore:
        return ConnectionStore(self)

    @property
    def ai(self) -> AiStore:
        return AiStore(self)

    @property
    def alerts(self) -> AlertStore:
        return AlertStore(self)

    @property
    def audit(self) -> AuditStore:
        return AuditStore(self)

    @property
    def signatures(self) -> SignatureStore:
        return SignatureStore(self)

    @property
    def heartbeats(self) -> HeartbeatStore:
        return HeartbeatStore(self)

    @property
    def overrides(self) -> OverrideStore:
        return OverrideStore(self)

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self)

    @property
    def automations(self) -> AutomationStore:
        return AutomationStore(self)

    schema_behind = reads(migrate.behind)

    @abc.abstractmethod
    async def transact(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Run `fn` on a SQLAlchemy connection in one transaction, committed if `write`.

        Every verb whose SQL both engines share is built on this, here and in the
        sub-stores; an engine implements only the verbs it runs its own way.
        """

    @abc.abstractmethod
    async def open(self, *, migrate: bool = True, progress: Progress = silent) -> None:
        """Connect, refuse a corrupt or newer database, and bring the schema up to date
        (telling `progress` each migration applied)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""

    # -- a token refresh (the rest of the connection verbs: `ConnectionStore`) ----------

    @abc.abstractmethod
    async def take_refresh_lock(
        self, connection_id: int, token: str, until: datetime, now: datetime
    ) -> Sealed | None:
        """Take the connection's refresh lease if it is free or lapsed, and read the row
        under it, atomically; None when another process holds the lease."""

    @abc.abstractmethod
    async def save_refresh(self, connection_id: int, saving: SavedRefresh) -> bool:
        """Store refreshed secrets, their event and the next refresh run in one transaction,
        if `saving.token` still holds the lease and the version is still `saving.version`
        (then bump it and release the lease); False, writing nothing, otherwise."""

    # -- schedules ---------------------------------------------------------------------

    @abc.abstractmethod
    async def sync_schedules(self, wanted: list[Schedule]) -> None:
        """Make the stored schedules exactly `wanted`, keeping the cursor of those that stay."""

    due_schedules = reads(queries.due_schedules)

    @abc.abstractmethod
    async def record_ticks(
        self, ticks: list[Tick], advances: list[ScheduleAdvance], now: datetime
    ) -> dict[tuple[str, datetime], int]:
        """Record each tick's fate exactly once and advance the cursors, in one transaction.

        A (job, instant) already in the ledger is left alone, whoever wrote it: this is
        what makes firing exactly-once with any number of schedulers. Returns the ids of
        the runs started, by (job, instant).
        """

    next_wakeup = reads(queries.next_wakeup)

    # -- jobs --------------------------------------------------------------------------

    set_paused = writes(queries.set_paused)

    paused_jobs = reads(queries.paused_jobs)

    # -- runs --------------------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, run: NewRun, now: datetime) -> int:
        """Queue a run; a known `dedupe_key` returns the existing run's id instead."""

    @abc.abstractmethod
    async def subscribe(self, tier: Tier, wake: asyncio.Event) -> None:
        """Set `wake` whenever another process queues work for `tier` (best effort: workers
        poll as well)."""

    next_due = reads(queries.next_due)

    @abc.abstractmethod
    async def claim(
        self, worker: str, tier: Tier, limit: int, lease: timedelta, now: datetime
    ) -> list[Run]:
        """Take up to `limit` due runs of `tier` for `worker`, each under a fresh lease.

        Overlap is applied here, when runs are due: a `queue` run waits while its job has a
        running run; a scheduled `skip` run that meets one is not started (cancelled, its
        ledger entry `skipped_overlap`); a scheduled `replace` run asks it to cancel.
        """

    @abc.abstractmethod
    async def extend_leases(
        self, worker: str, run_ids: list[int], lease: timedelta, now: datetime
    ) -> set[int]:
        """Renew the leases `worker` still holds; returns the ids asked to cancel."""

    @abc.abstractmethod
    async def complete(
        self, done: list[Done], now: datetime, then_claim: ClaimRequest | None = None
    ) -> Completion:
        """Record the end of attempts, and take the worker's next runs, in one transaction.

        `held[i]` is False when `done[i]`'s lease was lost (another attempt owns the run).
        """

    reap_expired = writes(queries.reap_expired)

    request_cancel = writes(queries.request_cancel)

    get_run = reads(queries.get_run)

    list_runs = reads(queries.list_runs)

    ledger = reads(queries.ledger)

    last_runs = reads(queries.last_runs)

    @abc.abstractmethod
    async def enqueue_audited(
        self, run: NewRun, now: datetime, audit: Callable[[int, bool], AuditEntry]
    ) -> tuple[int, bool]:
        """See `AuditStore.enqueue`: the API's hot path, in each engine's plain SQL."""

    # -- rate limits -------------------------------------------------------------------

    @abc.abstractmethod
    async def take_tokens(
        self, key: str, want: int, interval: float, limit: float, now: float
    ) -> tuple[int, float]:
        """Take up to `want` tokens from the shared bucket `key` (one statement:
        `rate_buckets`): how many there were, and the bucket's theoretical arrival time
        after the call. Instants are seconds since the epoch."""

    forget_buckets = writes(rate_buckets.forget)

    snapshot = reads(metric_queries.snapshot)

    usage_days = reads(usage_queries.usage_days)

    job_profiles = reads(usage_queries.job_profiles)

    usage = reads(queries.usage)

    run_logs = reads(queries.run_logs)
