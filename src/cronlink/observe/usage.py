"""Usage against the quotas of the hosted services a team would otherwise use, and where
the month is heading: what `cronlink usage` prints and `cronlink advise` weighs."""

from __future__ import annotations

import calendar
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.jobs import with_overrides
from cronlink.records.runs import Tier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cronlink.config_models import UsageModel
    from cronlink.jobs import Job
    from cronlink.records.runs import DayUsage
    from cronlink.store import Store


@dataclass(kw_only=True, slots=True)
class TierMonth:
    invocations: int = 0
    requests: int = 0
    run_seconds: float = 0.0
    cpu_seconds: float = 0.0
    memory_gib_s: float = 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageReport:
    days: list[DayUsage]
    month: dict[Tier, TierMonth]
    """This calendar month so far (UTC)."""
    month_fraction: float
    """How much of the month has passed: projections divide by it."""
    light_today: int
    light_busiest: int
    """The most light invocations of one day in `days`."""
    scheduled_jobs: int
    quotas: UsageModel
    cron_triggers: int = 0
    """Distinct schedules (expression and zone): the triggers a light runner needs for
    one each."""
    warnings: list[QuotaWarning] = field(default_factory=list)

    def projected(self, tier: Tier) -> int:
        """This month's invocations at the pace so far."""
        return round(self.month[tier].invocations / self.month_fraction)


NEAR = 0.8
"""The share of a quota past which usage is called near it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QuotaWarning:
    quota: str
    """`light`, `heavy` or `schedules`."""
    text: str


async def measured(
    store: Store, jobs: Mapping[str, Job], quotas: UsageModel, now: datetime, days: int = 1
) -> UsageReport:
    """The month so far against `quotas`, the schedules counted as every scheduler fires
    them (overrides applied); `days` lists the last so many days."""
    current = with_overrides(jobs, await store.overrides.all())
    scheduled = sum(1 for job in current.values() if job.schedules)
    triggers = {(s.cron.source, s.timezone) for job in current.values() for s in job.schedules}
    history = await store.usage_days(min(month_start(now), now - timedelta(days=days)))
    made = report(history, scheduled, quotas, now)
    first = (now - timedelta(days=days - 1)).date()
    recent = [d for d in made.days if d.day >= first]
    return dataclasses.replace(made, days=recent, cron_triggers=len(triggers))


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def report(
    days: list[DayUsage], scheduled_jobs: int, quotas: UsageModel, now: datetime
) -> UsageReport:
    """`days` must reach back at least to the start of the month for the month's figures."""
    start = month_start(now)
    length = calendar.monthrange(start.year, start.month)[1]
    fraction = max((now - start) / timedelta(days=length), 1 / (24 * length))
    month = {tier: TierMonth() for tier in Tier}
    light: dict[object, int] = {}
    for day in days:
        if day.tier is Tier.LIGHT:
            light[day.day] = light.get(day.day, 0) + day.invocations
        if day.day >= start.date():
            entry = month[day.tier]
            entry.invocations += day.invocations
            entry.requests += day.requests
            entry.run_seconds += day.run_seconds
            entry.cpu_seconds += day.cpu_seconds
            entry.memory_gib_s += day.memory_gib_s
    made = UsageReport(
        days=days, month=month, month_fraction=fraction,
        light_today=light.get(now.astimezone(UTC).date(), 0),
        light_busiest=max(light.values(), default=0), scheduled_jobs=scheduled_jobs,
        quotas=quotas,
    )  # fmt: skip
    made.warnings.extend(_near_quotas(made))
    return made


def _near_quotas(made: UsageReport) -> list[QuotaWarning]:
    quotas = made.quotas
    found = []
    if made.light_busiest >= NEAR * quotas.light_per_day:
        found.append(QuotaWarning(quota="light", text=(
            f"{made.light_busiest:,} light invocations on the busiest day, "
            f"{made.light_busiest / quotas.light_per_day:.0%} of {quotas.light_per_day:,}/day"
        )))  # fmt: skip
    heavy = made.projected(Tier.HEAVY)
    if heavy >= NEAR * quotas.heavy_per_month:
        found.append(QuotaWarning(quota="heavy", text=(
            f"{heavy:,} heavy invocations projected this month, "
            f"{heavy / quotas.heavy_per_month:.0%} of {quotas.heavy_per_month:,}/month"
        )))  # fmt: skip
    if made.scheduled_jobs > quotas.scheduler_jobs:
        found.append(QuotaWarning(quota="schedules", text=(
            f"{made.scheduled_jobs} scheduled jobs, {quotas.scheduler_jobs} free on a cloud "
            "scheduler (one POST /cron/tick trigger can drive them all)"
        )))  # fmt: skip
    return found
