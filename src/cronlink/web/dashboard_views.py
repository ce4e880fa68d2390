"""What each dashboard page shows, gathered from the core and the store's dashboard
queries: no SQL and no HTML here, only the figures the templates lay out."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cronlink import control
from cronlink.cron import explain, iter_fires
from cronlink.jobs import with_overrides
from cronlink.observe import advice
from cronlink.observe.usage import measured
from cronlink.records.runs import Tier
from cronlink.store import RunFilter
from cronlink.store.dashboard_queries import DashboardQueries
from cronlink.web import charts

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from cronlink.jobs import Job, ScheduleSpec
    from cronlink.web.service import WebService

WINDOW = timedelta(hours=24)
UPCOMING = 10
PAGE = 50
CHART_RUNS = 100
USAGE_DAYS = 30
ADVICE_WINDOW = timedelta(days=7)
ATTENTION = 10
"""Unhealthy things listed on the overview, of each kind."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Fire:
    at: datetime
    job: str
    paused: bool


async def overview(service: WebService, now: datetime) -> dict[str, Any]:
    queries = DashboardQueries(service.store)
    window = await queries.window(now - WINDOW, now)
    statuses = await control.job_statuses(service.store, service.app, now)
    jobs = await _jobs(service)
    paused = {s.name for s in statuses if s.paused}
    runs = sum(j.runs for j in window.jobs.values())
    failed = sum(j.failed for j in window.jobs.values())
    return {
        "statuses": statuses,
        "window": window.jobs,
        "runs": runs,
        "failed": failed,
        "error_rate": failed / runs if runs else None,
        "chart": charts.hourly(window.hours),
        "upcoming": _upcoming(jobs.values(), paused, now),
        "dead": await queries.dead_runs(now - WINDOW, ATTENTION),
        "connections": (
            await queries.unhealthy_connections(ATTENTION) if service.connections else None
        ),
        "stalled": (await queries.stalled_automations(ATTENTION) if service.automations else None),
    }


async def job_page(
    service: WebService, name: str, before_id: int | None, now: datetime
) -> dict[str, Any]:
    """`UnknownJobError` when there is no such job."""
    service.app.get(name)
    job = (await _jobs(service))[name]
    [status] = [s for s in await control.job_statuses(service.store, service.app, now)
                if s.name == name]  # fmt: skip
    found = await service.store.list_runs(RunFilter(job=name, before_id=before_id,
                                                    limit=PAGE + 1))  # fmt: skip
    recent = await DashboardQueries(service.store).recent(name, CHART_RUNS)
    schedules = [
        {
            "cron": spec.cron.source,
            "timezone": spec.timezone,
            "explain": explain(spec.cron.source),
            "fires": list(itertools.islice(iter_fires(spec.cron, now, spec.zone), UPCOMING)),
        }
        for spec in job.schedules
    ]
    return {
        "job": job,
        "status": status,
        "schedules": schedules,
        "runs": found[:PAGE],
        "older": found[PAGE - 1].id if len(found) > PAGE else None,
        "chart": charts.durations(recent),
    }


async def run_page(service: WebService, run_id: int) -> dict[str, Any]:
    """`RunNotFoundError` when there is no such run."""
    run = await service.store.get_run(run_id)
    return {"run": run, "logs": await service.store.run_logs(run_id)}


async def connections_page(service: WebService, after_id: int) -> dict[str, Any]:
    if service.connections is None:
        return {"configured": False}
    found = await service.connections.find(after_id=after_id, limit=PAGE + 1)
    return {
        "configured": True,
        "unhealthy": await DashboardQueries(service.store).unhealthy_connections(ATTENTION),
        "connections": found[:PAGE],
        "newer": found[PAGE - 1].id if len(found) > PAGE else None,
    }


async def automations_page(service: WebService, after_id: int, now: datetime) -> dict[str, Any]:
    if service.automations is None:
        return {"configured": False}
    found = await service.automations.find(after_id=after_id, limit=PAGE + 1)
    shown = found[:PAGE]
    counts = await DashboardQueries(service.store).event_counts([a.id for a in shown],
                                                               now - WINDOW)  # fmt: skip
    return {
        "configured": True,
        "automations": shown,
        "counts": counts,
        "newer": found[PAGE - 1].id if len(found) > PAGE else None,
    }


async def usage_page(service: WebService, now: datetime) -> dict[str, Any]:
    """The last USAGE_DAYS days and the month so far against the quotas; the advice and
    the hosted prices of `cronlink advise`."""
    made = await measured(
        service.store, service.app.jobs, service.quotas, now, USAGE_DAYS, service.budgets
    )
    profiles = await service.store.job_profiles(now - ADVICE_WINDOW)
    costs = advice.hosted_costs(made, service.pricing)
    return {
        "usage": made, "chart": charts.daily(made.days),
        "heavy_month": made.month[Tier.HEAVY].invocations,
        "heavy_projected": made.projected(Tier.HEAVY),
        "advice": advice.advise(profiles, made), "costs": costs,
        "total": sum(c.monthly for c in costs),
    }  # fmt: skip


async def _jobs(service: WebService) -> dict[str, Job]:
    """The jobs with their schedules as every scheduler fires them (overrides applied)."""
    return with_overrides(service.app.jobs, await service.store.overrides.all())


def _upcoming(jobs: Iterable[Job], paused: set[str], now: datetime) -> list[Fire]:
    streams = [_fires(job, spec, job.name in paused, now) for job in jobs for spec in job.schedules]
    return list(itertools.islice(heapq.merge(*streams, key=lambda f: f.at), UPCOMING))


def _fires(job: Job, spec: ScheduleSpec, paused: bool, now: datetime) -> Iterator[Fire]:
    for at in iter_fires(spec.cron, now, spec.zone):
        yield Fire(at=at, job=job.name, paused=paused)
