"""Usage against the quotas of the hosted services a team would otherwise use, and where
the month is heading: what `cronlink usage` prints and `cronlink advise` weighs."""

from __future__ import annotations

import calendar
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.jobs import with_overrides
from cronlink.plurals import counted
from cronlink.records.ai_calls import ModelSpend, month_of
from cronlink.records.runs import Tier

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

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
    models: list[ModelMonth] = field(default_factory=list)
    """Each chat model called this month, with its budget."""
    model_callers: dict[str, int] = field(default_factory=dict)
    """Calls to chat models this month, by the job that made them."""
    warnings: list[QuotaWarning] = field(default_factory=list)

    def projected(self, tier: Tier) -> int:
        """This month's invocations at the pace so far."""
        return round(self.month[tier].invocations / self.month_fraction)


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelMonth:
    """A chat model's month so far, against its budget."""

    spent: ModelSpend
    budget_usd: float | None
    projected_usd: float
    """This month's cost at the pace so far."""


NEAR = 0.8
"""The share of a quota past which usage is called near it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class QuotaWarning:
    quota: str
    """`light`, `heavy`, `schedules`, `ai:MODEL` (a model's budget at 80 %) or
    `ai:MODEL:spent`."""
    text: str

    @property
    def subject(self) -> str:
        model = self.quota.removeprefix("ai:")
        if model == self.quota:
            return f"usage nears the {self.quota} quota"
        if model.endswith(":spent"):
            return f"model {model.removesuffix(':spent')} has spent its budget"
        return f"model {model} nears its budget"


async def measured(
    store: Store,
    jobs: Mapping[str, Job],
    quotas: UsageModel,
    now: datetime,
    days: int = 1,
    budgets: Mapping[str, float | None] | None = None,
) -> UsageReport:
    """The month so far against `quotas` and the chat models' `budgets` (by name), the
    schedules counted as every scheduler fires them (overrides applied); `days` lists the
    last so many days."""
    current = with_overrides(jobs, await store.overrides.all())
    scheduled = sum(1 for job in current.values() if job.schedules)
    triggers = {(s.cron.source, s.timezone) for job in current.values() for s in job.schedules}
    history = await store.usage_days(min(month_start(now), now - timedelta(days=days)))
    spent = await store.ai.month(month_of(now))
    made = report(history, scheduled, quotas, now, spent, budgets or {})
    first = (now - timedelta(days=days - 1)).date()
    recent = [d for d in made.days if d.day >= first]
    callers = await store.ai.callers(month_start(now))
    return dataclasses.replace(
        made, days=recent, cron_triggers=len(triggers), model_callers=callers
    )


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def report(
    days: list[DayUsage],
    scheduled_jobs: int,
    quotas: UsageModel,
    now: datetime,
    spent: Sequence[ModelSpend] = (),
    budgets: Mapping[str, float | None] | None = None,
) -> UsageReport:
    """`days` must reach back at least to the start of the month for the month's figures;
    `spent` is the month's calls to chat models, `budgets` theirs by name."""
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
        quotas=quotas, models=_months(spent, budgets or {}, fraction),
    )  # fmt: skip
    made.warnings.extend(_near_quotas(made))
    return made


def _months(
    spent: Sequence[ModelSpend], budgets: Mapping[str, float | None], fraction: float
) -> list[ModelMonth]:
    called = {s.model: s for s in spent}
    # A budgeted model not called yet this month is listed too: its budget is news.
    budgeted = {name: ModelSpend(model=name) for name, b in budgets.items() if b is not None}
    return [
        ModelMonth(spent=s, budget_usd=budgets.get(name), projected_usd=s.cost_usd / fraction)
        for name, s in sorted((budgeted | called).items())
    ]


def _near_quotas(made: UsageReport) -> list[QuotaWarning]:
    quotas = made.quotas
    found = []
    if made.light_busiest >= NEAR * quotas.light_per_day:
        found.append(QuotaWarning(quota="light", text=(
            f"{counted(made.light_busiest, 'light invocation')} on the busiest day, "
            f"{made.light_busiest / quotas.light_per_day:.0%} of {quotas.light_per_day:,}/day"
        )))  # fmt: skip
    heavy = made.projected(Tier.HEAVY)
    if heavy >= NEAR * quotas.heavy_per_month:
        found.append(QuotaWarning(quota="heavy", text=(
            f"{counted(heavy, 'heavy invocation')} projected this month, "
            f"{heavy / quotas.heavy_per_month:.0%} of {quotas.heavy_per_month:,}/month"
        )))  # fmt: skip
    if made.scheduled_jobs > quotas.scheduler_jobs:
        found.append(QuotaWarning(quota="schedules", text=(
            f"{counted(made.scheduled_jobs, 'scheduled job')}, {quotas.scheduler_jobs} free on "
            "a cloud scheduler (one POST /cron/tick trigger can drive them all)"
        )))  # fmt: skip
    for month in made.models:
        budget, cost, model = month.budget_usd, month.spent.cost_usd, month.spent.model
        if budget is not None and cost >= NEAR * budget:
            found.append(QuotaWarning(quota=f"ai:{model}", text=(
                f"model {model} cost ${cost:,.2f} this month, {cost / budget:.0%} of its "
                f"${budget:,.2f} budget"
            )))  # fmt: skip
        # Spent is news of its own (an alert of its own): the calls have stopped.
        if budget is not None and cost >= budget:
            found.append(QuotaWarning(quota=f"ai:{model}:spent", text=(
                f"model {model}'s budget of ${budget:,.2f} is spent: no new calls to it this "
                "month"
            )))  # fmt: skip
    return found
