"""`cronlink usage` and `cronlink advise`: what the load was, against the hosted services'
quotas and prices, and what to change."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink.cli.options import print_json, settings_from, settings_options, with_store
from cronlink.cli.show import console
from cronlink.compose import build_app
from cronlink.observe import advice
from cronlink.observe.usage import UsageReport, measured
from cronlink.plurals import counted
from cronlink.records.runs import Tier

if TYPE_CHECKING:
    from cronlink.config import Settings
    from cronlink.records.runs import JobProfile
    from cronlink.store import Store


@click.command()
@click.option("--days", type=click.IntRange(1, 400), default=30, show_default=True,
              help="Days of history to list (the month so far is always counted).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@settings_options
def usage(days: int, as_json: bool, **options: Any) -> None:
    """Invocations per tier per day, outbound requests, heavy CPU and memory-seconds; the
    month so far against the free quotas, and projected to its end; each chat model's
    calls, tokens and cost this month against its budget."""
    settings = settings_from(options["config_path"], options["database_url"], options["app_path"])
    made, _ = _measure(settings, days, timedelta(0))
    if as_json:
        print_json(_report_dict(made))
        return
    table = Table("day (UTC)", "tier", "runs", "invocations", "requests", "run s", "CPU s",
                  "memory GiB-s", title="usage")  # fmt: skip
    for day in made.days:
        measured = day.tier is Tier.HEAVY  # a light run's CPU and memory are its worker's
        table.add_row(str(day.day), day.tier.value, f"{day.runs:,}", f"{day.invocations:,}",
                      f"{day.requests:,}", f"{day.run_seconds:,.1f}",
                      f"{day.cpu_seconds:,.1f}" if measured else "-",
                      f"{day.memory_gib_s:,.2f}" if measured else "-")  # fmt: skip
    console.print(table)
    quotas = made.quotas
    click.echo(
        f"light: {counted(made.light_today, 'invocation')} today "
        f"of {quotas.light_per_day:,}/day free "
        f"(busiest day {made.light_busiest:,})"
    )
    heavy = made.month[Tier.HEAVY].invocations
    click.echo(
        f"heavy: {counted(heavy, 'invocation')} this month, "
        f"{made.projected(Tier.HEAVY):,} projected, "
        f"of {quotas.heavy_per_month:,}/month free"
    )
    click.echo(
        f"schedules: {counted(made.scheduled_jobs, 'scheduled job')}, {quotas.scheduler_jobs} free"
    )
    if made.models:
        console.print(_models_table(made))
    for warning in made.warnings:
        click.echo(f"near a quota: {warning.text}")


@click.command()
@click.option("--days", type=click.IntRange(1, 90), default=7, show_default=True,
              help="The window of runs whose durations and memory are weighed.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@settings_options
def advise(days: int, as_json: bool, **options: Any) -> None:
    """Recommendations from what was measured (cronlink's rules for light versus heavy
    work), with the figures behind each; the month's load priced on the hosted services
    beside the resources it used here."""
    settings = settings_from(options["config_path"], options["database_url"], options["app_path"])
    made, profiles = _measure(settings, days, timedelta(days=days))
    found = advice.advise(profiles, made)
    costs = advice.hosted_costs(made, settings.pricing)
    heavy = made.month[Tier.HEAVY]
    here = {"cpu_seconds": round(heavy.cpu_seconds / made.month_fraction, 1),
            "memory_gib_s": round(heavy.memory_gib_s / made.month_fraction, 2)}  # fmt: skip
    if as_json:
        print_json({
            "recommendations": [dataclasses.asdict(a) for a in found],
            "hosted_monthly": [dataclasses.asdict(c) for c in costs],
            "self_hosted_monthly_heavy": here,
        })  # fmt: skip
        return
    if not found:
        click.echo("nothing to change: every job fits its tier and the quotas")
    for item in found:
        click.echo(f"{item.subject}: {item.recommendation}\n    ({item.figures})")
    click.echo("\nthis month's load, projected to its end, on hosted services (see [pricing]):")
    for cost in costs:
        click.echo(f"  {cost.service}: ${cost.monthly:,.2f}/month  ({cost.basis})")
    total = sum(c.monthly for c in costs)
    click.echo(f"  total: ${total:,.2f}/month")
    click.echo(
        f"here, heavy runs used {here['cpu_seconds']:,} CPU-seconds and "
        f"{here['memory_gib_s']:,} GiB-seconds (projected to the month's end)"
    )


def _measure(
    settings: Settings, days: int, window: timedelta
) -> tuple[UsageReport, list[JobProfile]]:
    now = datetime.now(UTC)
    jobs = build_app(settings).jobs

    async def read(store: Store) -> tuple[UsageReport, list[JobProfile]]:
        profiles = await store.job_profiles(now - window) if window else []
        made = await measured(store, jobs, settings.usage, now, days, settings.ai.budgets)
        return made, profiles

    return with_store(settings, read)


def _models_table(made: UsageReport) -> Table:
    table = Table("model", "calls", "failed", "input tokens", "output tokens", "cost $",
                  "projected $", "budget $", title="chat models this month (UTC)")  # fmt: skip
    for month in made.models:
        spent, budget = month.spent, month.budget_usd
        table.add_row(spent.model, f"{spent.calls:,}", f"{spent.failed:,}",
                      f"{spent.input_tokens:,}", f"{spent.output_tokens:,}",
                      f"{spent.cost_usd:,.4f}", f"{month.projected_usd:,.2f}",
                      "-" if budget is None else f"{budget:,.2f}")  # fmt: skip
    return table


def _report_dict(made: UsageReport) -> dict[str, Any]:
    return {
        "days": [dataclasses.asdict(d) | {"day": str(d.day)} for d in made.days],
        "month": {t.value: dataclasses.asdict(m) for t, m in made.month.items()},
        "projected_invocations": {t.value: made.projected(t) for t in Tier},
        "light_today": made.light_today, "light_busiest_day": made.light_busiest,
        "scheduled_jobs": made.scheduled_jobs, "quotas": made.quotas.model_dump(),
        "models": [
            dataclasses.asdict(m.spent) | {"budget_usd": m.budget_usd,
                                           "projected_usd": m.projected_usd}
            for m in made.models
        ],
        "near_quota": [dataclasses.asdict(w) for w in made.warnings],
    }  # fmt: skip
