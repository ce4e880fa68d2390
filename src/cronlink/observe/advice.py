"""`cronlink advise`: cronlink's rules for light versus heavy work applied to what was
measured, and what the same load would cost on the hosted services it replaces.

Each recommendation carries the figures behind it. Prices are `[pricing]` in
cronlink.toml (`config_models.PricingModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cronlink.plurals import counted
from cronlink.records.runs import Tier

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cronlink.config_models import PricingModel
    from cronlink.observe.usage import UsageReport
    from cronlink.records.runs import JobProfile

LIGHT_TIMEOUT_S = 30.0
"""A hosted light runner's wall-time limit per invocation."""
LIGHT_MEMORY = 128 * 2**20
"""A hosted light runner's memory limit."""
NEAR = 0.8


@dataclass(frozen=True, kw_only=True, slots=True)
class Advice:
    subject: str
    recommendation: str
    figures: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Cost:
    service: str
    monthly: float
    basis: str


def advise(profiles: list[JobProfile], usage: UsageReport) -> list[Advice]:
    found: list[Advice] = []
    for job in profiles:
        if job.p95_ms is None:
            continue
        seconds = job.p95_ms / 1000
        if job.tier is Tier.LIGHT and seconds >= NEAR * LIGHT_TIMEOUT_S:
            found.append(Advice(
                subject=f"job {job.job}",
                recommendation='run it heavy (tier = "heavy"): a light runner stops it at '
                f"{LIGHT_TIMEOUT_S:g} s",
                figures=f"p95 {seconds:.1f} s over {job.runs:,} runs",
            ))  # fmt: skip
        calls = usage.model_callers.get(job.job, 0)
        if job.tier is Tier.LIGHT and calls and seconds < NEAR * LIGHT_TIMEOUT_S:
            found.append(Advice(
                subject=f"job {job.job}",
                recommendation='run it heavy (tier = "heavy"): a chat model takes seconds to '
                f"answer, often more under load, and a light runner stops a run at "
                f"{LIGHT_TIMEOUT_S:g} s",
                figures=f"{calls:,} calls to models this month; p95 {seconds:.1f} s over "
                f"{job.runs:,} runs",
            ))  # fmt: skip
        small = job.peak_memory is not None and job.peak_memory < NEAR * LIGHT_MEMORY
        if job.tier is Tier.HEAVY and small and seconds < LIGHT_TIMEOUT_S / 3:
            found.append(Advice(
                subject=f"job {job.job}",
                recommendation="it could run light (no process per run), if it keeps no "
                "state between runs",
                figures=f"p95 {seconds:.1f} s, peak {(job.peak_memory or 0) / 2**20:.0f} MiB "
                f"over {job.runs:,} runs",
            ))  # fmt: skip
    quota = usage.quotas.light_per_day
    if usage.light_busiest > quota:
        found.append(Advice(
            subject="light tier",
            recommendation="beyond a light runner's free plan: on cronlink, run a second "
            "`cronlink worker --tier light`, or move to PostgreSQL to spread it over machines",
            figures=f"{counted(usage.light_busiest, 'invocation')} on the busiest day, quota "
            f"{quota:,}/day",
        ))  # fmt: skip
    if usage.scheduled_jobs > usage.quotas.scheduler_jobs:
        found.append(Advice(
            subject="schedules",
            recommendation="drive every schedule from one trigger calling POST /cron/tick "
            "each minute instead of one scheduler job each",
            figures=f"{counted(usage.scheduled_jobs, 'scheduled job')}, "
                    f"{usage.quotas.scheduler_jobs} free",
        ))  # fmt: skip
    if usage.cron_triggers > usage.quotas.light_triggers:
        found.append(Advice(
            subject="cron triggers",
            recommendation="on a light runner, pack them: `cronlink export wrangler --pack` "
            "needs one every-minute trigger calling POST /cron/tick, in any time zone",
            figures=f"{usage.cron_triggers} distinct schedules, {usage.quotas.light_triggers} "
            "triggers on a free plan",
        ))  # fmt: skip
    found.extend(_models(usage))
    return found


DOMINANT = 0.8
"""The share of the month's model cost past which one model's calls are worth a look."""
NOTABLE_USD = 1.0
"""A month projected under this costs too little to advise on."""


def _models(usage: UsageReport) -> Iterator[Advice]:
    total = sum(m.projected_usd for m in usage.models)
    for month in usage.models:
        spent, projected = month.spent, month.projected_usd
        if not spent.calls or projected < NOTABLE_USD:
            continue
        per_call = spent.cost_usd / spent.calls
        figures = (
            f"${spent.cost_usd:,.2f} over {spent.calls:,} calls this month (${per_call:,.4f} "
            f"a call), ${projected:,.2f} projected"
        )
        if len(usage.models) > 1 and projected >= DOMINANT * total:
            found = f"{projected / total:.0%} of what models cost this month"
            yield Advice(
                subject=f"model {spent.model}",
                recommendation=f"it makes {found}: a smaller model, a shorter prompt or a "
                "lower max_tokens for its steps would cut the most",
                figures=figures,
            )
        budget = month.budget_usd
        if budget is not None and spent.cost_usd < budget <= projected:
            yield Advice(
                subject=f"model {spent.model}",
                recommendation=f"at this pace it spends its ${budget:,.2f} budget before the "
                "month ends, and its calls stop then: raise budget_usd or call it less",
                figures=figures,
            )


def hosted_costs(usage: UsageReport, prices: PricingModel) -> list[Cost]:
    """This month's load, projected to the month's end, on the hosted services."""
    scale = 1 / usage.month_fraction
    light = usage.month[Tier.LIGHT].invocations * scale
    light_cost = 0.0
    if usage.light_busiest > usage.quotas.light_per_day:
        extra = max(0.0, light - prices.light_included) / 1e6
        light_cost = prices.light_plan + extra * prices.light_per_million
    heavy = usage.month[Tier.HEAVY]
    requests = heavy.invocations * scale
    vcpu = heavy.run_seconds * scale
    gib = vcpu * prices.heavy_memory_gib
    heavy_cost = (
        max(0.0, requests - usage.quotas.heavy_per_month) / 1e6 * prices.heavy_per_million
        + max(0.0, vcpu - prices.heavy_free_vcpu_seconds) * prices.heavy_vcpu_second
        + max(0.0, gib - prices.heavy_free_gib_seconds) * prices.heavy_gib_second
    )
    paid_jobs = max(0, usage.scheduled_jobs - usage.quotas.scheduler_jobs)
    return [
        Cost(service="light cron runner", monthly=light_cost,
             basis=f"{light:,.0f} invocations, busiest day {usage.light_busiest:,}"),
        Cost(service="heavy HTTP service", monthly=heavy_cost,
             basis=f"{requests:,.0f} requests, {vcpu:,.0f} vCPU-s, {gib:,.0f} GiB-s "
             f"at {prices.heavy_memory_gib:g} GiB an instance"),
        Cost(service="cloud scheduler", monthly=paid_jobs * prices.scheduler_job,
             basis=counted(usage.scheduled_jobs, "scheduled job")),
    ]  # fmt: skip
