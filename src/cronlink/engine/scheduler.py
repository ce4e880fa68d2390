"""The scheduler: turns due schedule instants into runs, exactly once, and reaps lost leases.

Any number of schedulers may share a database: each records every due (job, instant) with
insert-or-ignore on the ledger's unique key, so the first to write wins and the rest are
no-ops; cursors only move forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.clock import Clock, SystemClock
from cronlink.cron import next_fire
from cronlink.jobs import new_run, with_overrides
from cronlink.observe import logs, metrics
from cronlink.plurals import counted
from cronlink.policies.misfire import plan
from cronlink.records.runs import Reason, RunState, Schedule
from cronlink.store import ScheduleAdvance, Tick

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cronlink.jobs import Job, ScheduleSpec
    from cronlink.store import Store

log = logging.getLogger("cronlink.scheduler")
MAX_CATCHUP = 10_000
"""Instants handled per schedule per pass; a longer backlog continues on the next pass."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TickReport:
    started: int = 0
    missed: int = 0
    schedules: int = 0


HEARTBEAT = "scheduler"
"""The heartbeat every scheduler, and `POST /cron/tick`, keep fresh (`/readyz` reads it)."""
BEAT_EVERY = timedelta(seconds=10)


class Scheduler:
    def __init__(
        self,
        store: Store,
        jobs: Mapping[str, Job],
        clock: Clock | None = None,
        *,
        batch: int = 250,
        max_sleep: float = 1.0,
        lookahead: timedelta = timedelta(seconds=0.5),
        on_fire: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.clock = clock or SystemClock()
        self.batch = batch
        self.max_sleep = max_sleep
        self.lookahead = lookahead
        """Fire instants this far ahead (runs wait for their `not_before`), so that at the
        instant the runs are already queued and workers start at once."""
        self.on_fire = on_fire
        self._specs: dict[str, tuple[Job, ScheduleSpec]] = {}

    async def _load(self) -> None:
        """The jobs' schedules, with those changed through the admin API in their place."""
        jobs = with_overrides(self.jobs, await self.store.overrides.all())
        self._specs = {
            f"{job.name}|{spec.key}": (job, spec) for job in jobs.values() for spec in job.schedules
        }

    async def sync(self, now: datetime) -> None:
        """Store the schedules of the registered jobs; new ones start from `now`."""
        await self._load()
        wanted = [_row(key, job, spec, now) for key, (job, spec) in self._specs.items()]
        await self.store.sync_schedules(wanted)

    async def tick(self, now: datetime) -> TickReport:
        """Record every schedule instant up to `now` plus the lookahead; misfire policies
        judge only the instants already past. Returns what was done."""
        total = TickReport()
        while True:
            due = await self.store.due_schedules(now + self.lookahead, self.batch)
            report = await self._fire(due, now)
            if report.started and self.on_fire is not None:
                self.on_fire()  # workers start on this batch while the next one is fired
            total = TickReport(
                started=total.started + report.started,
                missed=total.missed + report.missed,
                schedules=total.schedules + report.schedules,
            )
            if len(due) < self.batch or not report.schedules:
                return total

    async def _fire(self, due: list[Schedule], now: datetime) -> TickReport:
        ticks: list[Tick] = []
        advances: list[ScheduleAdvance] = []
        if any(row.key not in self._specs for row in due):
            # An operator changed a job's schedules since (or another scheduler runs a
            # newer configuration): once per batch at most, a read of a small table.
            await self._load()
        for row in due:
            found = self._specs.get(row.key)
            if found is None:
                continue
            job, spec = found
            horizon = now + self.lookahead
            instants, following = _instants(spec, row.cursor, horizon)
            past = [at for at in instants if at <= now]
            ahead = [(at, False) for at in instants[len(past) :]]
            for at, missed in plan(past, now, job.misfire, job.misfire_grace) + ahead:
                run = new_run(
                    job,
                    Reason.SCHEDULE,
                    scheduled_for=at,
                    not_before=at + _jitter(spec, job.name, at),
                )
                ticks.append(Tick(run=run, missed=missed))
            cursor = instants[-1] if following is not None and following <= horizon else horizon
            advances.append(ScheduleAdvance(key=row.key, cursor=cursor, next_at=following))
        started = await self.store.record_ticks(ticks, advances, now)
        return TickReport(
            started=len(started),
            missed=sum(1 for t in ticks if t.missed),
            schedules=len(advances),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Fire and reap until `stop` is set."""
        await self.sync(self.clock.now())
        beaten = None
        while not stop.is_set():
            now = self.clock.now()
            try:
                if beaten is None or now - beaten >= BEAT_EVERY:
                    await self.store.heartbeats.beat(HEARTBEAT, now)
                    beaten = now
                report = await self.tick(now)
                if report.started or report.missed:
                    log.info(
                        "fired %s, %s",
                        counted(report.started, "run"),
                        counted(report.missed, "missed instant"),
                    )
                for run in await self.store.reap_expired(now):
                    level = logging.ERROR if run.state is RunState.DEAD else logging.WARNING
                    with logs.attempt(run.id, run.job):
                        message = "run %d of %s lost its worker: now %s"
                        log.log(level, message, run.id, run.job, run.state)
                    metrics.EXPIRED_LEASES.labels(run.tier.value).inc()
            except Exception:
                log.exception("scheduler pass failed; retrying")
            await _wait(stop, await self._sleep_for(self.clock.now()))

    async def _sleep_for(self, now: datetime) -> float:
        """Seconds until the next instant is due; a second when the store cannot say (it
        may be restarting: the scheduler must outlive that, not exit)."""
        try:
            wake = await self.store.next_wakeup()
        except Exception:
            log.exception("could not read the next wake-up; retrying in 1 s")
            return min(1.0, self.max_sleep)
        if wake is None:
            return self.max_sleep
        return max(0.0, min(self.max_sleep, (wake - self.lookahead - now).total_seconds()))


def _instants(
    spec: ScheduleSpec, cursor: datetime, now: datetime
) -> tuple[list[datetime], datetime | None]:
    """Instants in (cursor, now], at most MAX_CATCHUP, and the instant after the last."""
    found: list[datetime] = []
    at = _next(spec, cursor)
    while at is not None and at <= now and len(found) < MAX_CATCHUP:
        found.append(at)
        at = _next(spec, at)
    return found, at


def schedule_rows(job: Job, now: datetime) -> list[Schedule]:
    """The stored schedules of `job` as they start at `now`."""
    return [_row(f"{job.name}|{spec.key}", job, spec, now) for spec in job.schedules]


def _row(key: str, job: Job, spec: ScheduleSpec, now: datetime) -> Schedule:
    return Schedule(key=key, job=job.name, cron=spec.cron.source, timezone=spec.timezone,
                    cursor=now, next_at=_next(spec, now))  # fmt: skip


def _next(spec: ScheduleSpec, after: datetime) -> datetime | None:
    at = next_fire(spec.cron, after, spec.zone)
    return None if at is None else at.astimezone(UTC)


def _jitter(spec: ScheduleSpec, job: str, at: datetime) -> timedelta:
    """A delay in [0, jitter), the same for a given (job, instant) in every scheduler."""
    if not spec.jitter:
        return timedelta(0)
    digest = hashlib.blake2b(f"{job}@{at.isoformat()}".encode(), digest_size=8).digest()
    return spec.jitter * (int.from_bytes(digest) / 2**64)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
