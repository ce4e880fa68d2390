"""Operations people and programs ask for — shared by the command line and the HTTP API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cronlink.cron import explain, next_fire
from cronlink.engine.scheduler import schedule_rows
from cronlink.errors import ConfigError
from cronlink.jobs import new_run, schedule, with_overrides
from cronlink.records.api_tokens import ApiToken, Scope, digest, new_secret
from cronlink.records.runs import Fate, Reason, Run, RunState, Tier
from cronlink.store import RunFilter

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.app import App
    from cronlink.records.audit import AuditEntry
    from cronlink.records.runs import Fire
    from cronlink.store import Store


@dataclass(frozen=True, kw_only=True, slots=True)
class JobStatus:
    name: str
    tier: str
    kind: str
    schedules: list[dict[str, str]]
    next_fire: datetime | None
    paused: bool
    overridden: bool
    """Its schedules were changed through the admin API (they replace the configured ones)."""
    last_state: str | None
    last_run_id: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryEntry:
    """A run, or a scheduled instant that did not become one (skipped or missed)."""

    at: datetime
    job: str
    fate: str
    run: Run | None


async def job_statuses(store: Store, app: App, now: datetime) -> list[JobStatus]:
    paused = await store.paused_jobs()
    last = await store.last_runs(list(app.jobs))
    overrides = await store.overrides.all()
    jobs = with_overrides(app.jobs, overrides)
    statuses = []
    for job in sorted(jobs.values(), key=lambda j: j.name):
        fires = [next_fire(s.cron, now, s.zone) for s in job.schedules]
        upcoming = [f for f in fires if f is not None]
        previous = last.get(job.name)
        statuses.append(
            JobStatus(
                name=job.name,
                tier=job.tier.value,
                kind="http" if job.target else "python",
                schedules=[
                    {
                        "cron": s.cron.source,
                        "timezone": s.timezone,
                        "explain": explain(s.cron.source),
                    }
                    for s in job.schedules
                ],
                next_fire=min(upcoming, key=lambda f: f.astimezone(UTC)) if upcoming else None,
                paused=job.name in paused,
                overridden=job.name in overrides,
                last_state=previous.state.value if previous else None,
                last_run_id=previous.id if previous else None,
            )
        )
    return statuses


async def trigger(
    store: Store, app: App, name: str, payload: Any, now: datetime, reason: Reason = Reason.MANUAL
) -> int:
    """Queue a run of job `name` now; `UnknownJobError` (with close names) if there is none."""
    job = app.get(name)
    return await store.enqueue(new_run(job, reason, payload=payload), now)


@dataclass(frozen=True, kw_only=True, slots=True)
class Queued:
    run_id: int
    deduplicated: bool
    """The key was seen before: this is the run it started, not a new one."""
    light: bool


async def request_run(
    store: Store,
    app: App,
    name: str,
    key: str | None,
    scheduled_for: datetime | None,
    now: datetime,
    audit: Callable[[int, bool], AuditEntry],
    *,
    payload: Any = None,
    traceparent: str | None = None,
) -> Queued:
    """Queue a run of `name` for an API caller, with its audit line (`audit(run_id,
    deduplicated)`) in the same transaction; a `key` seen before gives its run back.
    `traceparent`: the caller's trace, which the run's attempts continue."""
    job = app.get(name)
    dedupe = None if key is None else f"api:{name}:{key}"
    run = new_run(job, Reason.API, scheduled_for=scheduled_for, dedupe_key=dedupe,
                  payload=payload, traceparent=traceparent)  # fmt: skip
    run_id, deduplicated = await store.audit.enqueue(run, now, audit)
    return Queued(run_id=run_id, deduplicated=deduplicated, light=job.tier is Tier.LIGHT)


async def wait_up_to(store: Store, run_id: int, seconds: float) -> Run | None:
    """The run once finished, or None if it is still going after `seconds`."""
    try:
        return await asyncio.wait_for(wait_finished(store, run_id, poll=0.05), seconds)
    except TimeoutError:
        return None


async def wait_finished(store: Store, run_id: int, poll: float = 0.2) -> Run:
    while True:
        run = await store.get_run(run_id)
        if run.state.finished:
            return run
        await asyncio.sleep(poll)


async def history(
    store: Store, job: str | None, state: RunState | None, since: datetime | None, limit: int
) -> list[HistoryEntry]:
    """Runs, and with `since` also the instants that were skipped or missed, newest first."""
    runs = await store.list_runs(RunFilter(job=job, state=state, since=since, limit=limit))
    entries = [
        HistoryEntry(at=r.scheduled_for or r.enqueued_at, job=r.job, fate="run", run=r)
        for r in runs
    ]
    if since is not None and state is None:
        fires: list[Fire] = await store.ledger(job, since, limit)
        entries += [
            HistoryEntry(at=f.scheduled_for, job=f.job, fate=f.fate.value, run=None)
            for f in fires
            if f.fate is not Fate.RUN
        ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]


async def create_token(
    store: Store, name: str, scope: Scope, lifetime: timedelta | None, now: datetime
) -> tuple[ApiToken, str]:
    """A new API token and its secret: the only time the secret is seen (only its digest
    is kept)."""
    secret = new_secret()
    expires = None if lifetime is None else now + lifetime
    token = await store.tokens.create(name, scope, digest(secret), expires, now)
    return token, secret


async def set_schedules(
    store: Store, app: App, name: str, pairs: list[tuple[str, str]] | None, now: datetime
) -> None:
    """Replace job `name`'s schedules in every scheduler (None: back to its configured
    ones). Each is checked first: `CronSyntaxError` or `ValueError` (an unknown zone)
    names the bad one (also one that never fires), and nothing is changed."""
    job = app.get(name)
    overrides = {} if pairs is None else {name: pairs}
    seen: set[str] = set()
    for index, (cron, zone) in enumerate(pairs or []):
        try:
            key = schedule(cron, zone, fires_after=now).key
        except ValueError as error:
            raise ConfigError(f"schedules[{index}]: {error}") from None
        if key in seen:
            raise ConfigError(f"schedules[{index}]: {cron!r} in {zone} is listed twice")
        seen.add(key)
    changed = with_overrides({name: job}, overrides)[name]
    await store.overrides.replace(name, pairs, schedule_rows(changed, now), now)
