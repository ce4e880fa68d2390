"""Usage over time, read from what runs recorded (`cronlink usage`, `cronlink advise`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, func, select, type_coerce

from cronlink.records.runs import DayUsage, JobProfile, RunState, Tier
from cronlink.store.percentiles import percentiles
from cronlink.store.schema import enqueued_since, runs

if TYPE_CHECKING:
    from sqlalchemy import Connection

DAY_MICROS = 86_400_000_000
FAILED = (RunState.FAILED.value, RunState.TIMED_OUT.value, RunState.DEAD.value)


def usage_days(c: Connection, since: datetime) -> list[DayUsage]:
    """Per UTC day (of enqueueing) and tier since `since`, oldest first: runs, invocations,
    requests, CPU, memory."""
    recent = enqueued_since(
        since, runs.c.enqueued_at, runs.c.tier, runs.c.attempt, runs.c.requests,
        runs.c.duration_ms, runs.c.cpu_ms, runs.c.memory_mib_s,
    )  # fmt: skip
    day = type_coerce(recent.c.enqueued_at, BigInteger) // DAY_MICROS
    rows = c.execute(
        select(
            day, recent.c.tier, func.count(), func.coalesce(func.sum(recent.c.attempt), 0),
            func.coalesce(func.sum(recent.c.requests), 0),
            func.coalesce(func.sum(recent.c.duration_ms), 0),
            func.coalesce(func.sum(recent.c.cpu_ms), 0),
            func.coalesce(func.sum(recent.c.memory_mib_s), 0.0),
        )
        .group_by(day, recent.c.tier)
        .order_by(day, recent.c.tier)
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
    """Per job since `since`: runs, invocations, failures, p95 duration, peak memory."""
    recent = enqueued_since(
        since, runs.c.job, runs.c.tier, runs.c.attempt, runs.c.state, runs.c.peak_memory
    )
    rows = c.execute(
        select(
            recent.c.job, recent.c.tier, func.count(),
            func.coalesce(func.sum(recent.c.attempt), 0),
            func.count().filter(recent.c.state.in_(FAILED)), func.max(recent.c.peak_memory),
        )
        .group_by(recent.c.job, recent.c.tier)
        .order_by(recent.c.job, recent.c.tier)
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
