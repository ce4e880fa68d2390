"""Usage over time, read from what runs recorded (`cronlink usage`, `cronlink advise`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, func, select, type_coerce

from cronlink.records import DayUsage, JobProfile, RunState, Tier
from cronlink.store.percentiles import percentiles
from cronlink.store.schema import runs

if TYPE_CHECKING:
    from sqlalchemy import Connection

DAY_MICROS = 86_400_000_000
FAILED = (RunState.FAILED.value, RunState.TIMED_OUT.value, RunState.DEAD.value)


def usage_days(c: Connection, since: datetime) -> list[DayUsage]:
    """Per UTC day (of enqueueing) and tier, oldest first."""
    day = type_coerce(runs.c.enqueued_at, BigInteger) // DAY_MICROS
    rows = c.execute(
        select(
            day, runs.c.tier, func.count(), func.coalesce(func.sum(runs.c.attempt), 0),
            func.coalesce(func.sum(runs.c.requests), 0),
            func.coalesce(func.sum(runs.c.duration_ms), 0),
            func.coalesce(func.sum(runs.c.cpu_ms), 0),
            func.coalesce(func.sum(runs.c.memory_mib_s), 0.0),
        )
        .where(runs.c.enqueued_at >= since)
        .group_by(day, runs.c.tier)
        .order_by(day, runs.c.tier)
    )  # fmt: skip
    # PostgreSQL sums integers to Decimal: every figure goes through int() or float().
    return [
        DayUsage(
            day=datetime.fromtimestamp(int(number) * 86_400, UTC).date(), tier=Tier(tier),
            runs=int(count), invocations=int(attempts), requests=int(requests),
            run_seconds=int(duration) / 1000, cpu_seconds=int(cpu) / 1000,
            memory_gib_s=float(memory) / 1024,
        )
        for number, tier, count, attempts, requests, duration, cpu, memory in rows
    ]  # fmt: skip


def job_profiles(c: Connection, since: datetime) -> list[JobProfile]:
    rows = c.execute(
        select(
            runs.c.job, runs.c.tier, func.count(), func.coalesce(func.sum(runs.c.attempt), 0),
            func.count().filter(runs.c.state.in_(FAILED)), func.max(runs.c.peak_memory),
        )
        .where(runs.c.enqueued_at >= since)
        .group_by(runs.c.job, runs.c.tier)
        .order_by(runs.c.job, runs.c.tier)
    )  # fmt: skip
    p95 = percentiles(c, since, (95,))
    return [
        JobProfile(
            job=job, tier=Tier(tier), runs=int(count), invocations=int(attempts),
            failed=int(failed), p95_ms=p95.get(job, {}).get(95),
            peak_memory=None if peak is None else int(peak),
        )
        for job, tier, count, attempts, failed, peak in rows
    ]  # fmt: skip
