"""Usage against quotas, projections to the month's end, and the advice drawn from them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cronlink.config import load_settings
from cronlink.config_models import PricingModel, UsageModel
from cronlink.errors import ConfigError
from cronlink.observe.advice import advise, hosted_costs
from cronlink.observe.usage import report
from cronlink.records.ai_calls import ModelSpend
from cronlink.records.runs import DayUsage, JobProfile, Tier

# Ten days into a 30-day month, at midnight: a third of the month has passed.
NOW = datetime(2026, 11, 11, tzinfo=UTC)


def day(on: date, tier: Tier, invocations: int, run_seconds: float = 0.0) -> DayUsage:
    return DayUsage(
        day=on, tier=tier, runs=invocations, invocations=invocations, requests=2 * invocations,
        run_seconds=run_seconds, cpu_seconds=run_seconds / 2, memory_gib_s=run_seconds / 4,
    )  # fmt: skip


def test_the_month_so_far_is_projected_to_its_end_and_last_month_is_left_out() -> None:
    days = [
        day(date(2026, 10, 31), Tier.HEAVY, 5_000),
        day(date(2026, 11, 2), Tier.HEAVY, 100),
        day(date(2026, 11, 10), Tier.HEAVY, 200),
        day(date(2026, 11, 10), Tier.LIGHT, 40),
    ]
    made = report(days, scheduled_jobs=2, quotas=UsageModel(), now=NOW)
    assert made.month_fraction == pytest.approx(1 / 3)
    assert made.month[Tier.HEAVY].invocations == 300
    assert made.month[Tier.HEAVY].requests == 600
    assert made.projected(Tier.HEAVY) == 900
    assert made.light_today == 0  # the 11th has no runs yet
    assert made.light_busiest == 40
    assert not made.warnings


def test_near_and_over_the_quotas_is_said_with_the_figures() -> None:
    days = [
        day(date(2026, 11, 10), Tier.LIGHT, 90_000),
        day(date(2026, 11, 9), Tier.HEAVY, 600_000),
    ]
    made = report(days, scheduled_jobs=5, quotas=UsageModel(), now=NOW)
    assert [(w.quota, w.text) for w in made.warnings] == [
        ("light", "90,000 light invocations on the busiest day, 90% of 100,000/day"),
        ("heavy", "1,800,000 heavy invocations projected this month, 90% of 2,000,000/month"),
        ("schedules", "5 scheduled jobs, 3 free on a cloud scheduler (one POST /cron/tick "
         "trigger can drive them all)"),
    ]  # fmt: skip


def profile(job: str, tier: Tier, p95_ms: int | None, peak: int | None = None) -> JobProfile:
    return JobProfile(job=job, tier=tier, runs=10, invocations=10, failed=0, p95_ms=p95_ms,
                      peak_memory=peak)  # fmt: skip


def test_advice_follows_the_decision_matrix() -> None:
    usage = report([day(date(2026, 11, 10), Tier.LIGHT, 150_000)], 4, UsageModel(), NOW)
    found = advise(
        [
            profile("slow-light", Tier.LIGHT, 27_000),
            profile("quick-light", Tier.LIGHT, 900),
            profile("small-heavy", Tier.HEAVY, 2_000, peak=40 * 2**20),
            profile("big-heavy", Tier.HEAVY, 2_000, peak=900 * 2**20),
            profile("long-heavy", Tier.HEAVY, 600_000, peak=40 * 2**20),
            profile("never-ran", Tier.LIGHT, None),
        ],
        usage,
    )
    assert [(a.subject, a.figures) for a in found] == [
        ("job slow-light", "p95 27.0 s over 10 runs"),
        ("job small-heavy", "p95 2.0 s, peak 40 MiB over 10 runs"),
        ("light tier", "150,000 invocations on the busiest day, quota 100,000/day"),
        ("schedules", "4 scheduled jobs, 3 free"),
    ]
    assert "heavy" in found[0].recommendation
    assert "second `cronlink worker --tier light`" in found[2].recommendation


def test_more_distinct_schedules_than_light_triggers_advises_packing() -> None:
    usage = report([], 2, UsageModel(light_triggers=5), NOW)
    assert advise([], dataclasses.replace(usage, cron_triggers=5)) == []
    [packing] = advise([], dataclasses.replace(usage, cron_triggers=6))
    assert packing.subject == "cron triggers"
    assert packing.figures == "6 distinct schedules, 5 triggers on a free plan"
    assert "cronlink export wrangler --pack" in packing.recommendation


def test_hosted_costs_price_only_what_is_past_the_free_allowances() -> None:
    free = report(
        [day(date(2026, 11, 10), Tier.HEAVY, 1_000, run_seconds=3_000)], 3, UsageModel(), NOW
    )
    assert [c.monthly for c in hosted_costs(free, PricingModel())] == [0.0, 0.0, 0.0]
    busy = [
        day(date(2026, 11, 10), Tier.LIGHT, 200_000),
        # 300,000 heavy seconds so far: 900,000 projected, 720,000 past the free vCPU-s.
        day(date(2026, 11, 10), Tier.HEAVY, 1_000_000, run_seconds=300_000),
    ]
    costs = hosted_costs(report(busy, 5, UsageModel(), NOW), PricingModel())
    light, heavy, scheduler = (c.monthly for c in costs)
    assert light == pytest.approx(5.0)  # 600,000 a month: inside the paid plan's 10 million
    vcpu = 720_000 * 0.000024
    gib = (900_000 * 0.5 - 360_000) * 0.0000025
    requests = (3_000_000 - 2_000_000) / 1e6 * 0.40
    assert heavy == pytest.approx(vcpu + gib + requests)
    assert scheduler == pytest.approx(0.20)


def test_quotas_and_prices_come_from_the_file_and_bad_ones_are_named(tmp_path: Path) -> None:
    good = tmp_path / "cronlink.toml"
    good.write_text("[usage]\nlight_per_day = 5000\n[pricing]\nheavy_memory_gib = 2.0\n")
    settings = load_settings(good)
    assert settings.usage.light_per_day == 5000
    assert settings.usage.heavy_per_month == 2_000_000
    assert settings.pricing.heavy_memory_gib == 2.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[usage]\nlight_per_day = 0\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*usage\.light_per_day"):
        load_settings(bad)
    bad.write_text("[pricing]\nlight_plan = 5\nfree_lunch = 1\n")
    with pytest.raises(ConfigError, match=r"pricing\.free_lunch"):
        load_settings(bad)


def test_a_models_budget_nearly_spent_then_spent_is_said_and_one_not_called_is_listed() -> None:
    spent = [
        ModelSpend(model="big", calls=10, input_tokens=1000, cost_usd=8.5),
        ModelSpend(model="small", calls=90, cost_usd=12.0),
    ]
    budgets = {"big": 10.0, "small": 12.0, "idle": 5.0, "free": None}
    made = report([], scheduled_jobs=0, quotas=UsageModel(), now=NOW, spent=spent,
                  budgets=budgets)  # fmt: skip
    assert [(m.spent.model, m.budget_usd, m.projected_usd) for m in made.models] == [
        ("big", 10.0, pytest.approx(25.5)), ("idle", 5.0, 0.0),
        ("small", 12.0, pytest.approx(36.0)),
    ]  # fmt: skip
    assert [(w.quota, w.subject, w.text) for w in made.warnings] == [
        ("ai:big", "model big nears its budget",
         "model big cost $8.50 this month, 85% of its $10.00 budget"),
        ("ai:small", "model small nears its budget",
         "model small cost $12.00 this month, 100% of its $12.00 budget"),
        ("ai:small:spent", "model small has spent its budget",
         "model small's budget of $12.00 is spent: no new calls to it this month"),
    ]  # fmt: skip
