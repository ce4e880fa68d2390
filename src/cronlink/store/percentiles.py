"""Duration percentiles per job by the nearest-rank method, in one pass over a window of
runs (window functions: the same SQL on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select

from cronlink.store.schema import enqueued_since, runs

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection


def percentiles(
    c: Connection, since: datetime, points: tuple[int, ...]
) -> dict[str, dict[int, int]]:
    """{job: {percentile: duration_ms}} over the finished attempts of runs enqueued since
    `since` (the last attempt's duration, where a run has several)."""
    recent = enqueued_since(since, runs.c.job, runs.c.duration_ms)
    ranked = (
        select(
            recent.c.job,
            recent.c.duration_ms,
            func.row_number().over(partition_by=recent.c.job, order_by=recent.c.duration_ms)
            .label("rank"),
            func.count().over(partition_by=recent.c.job).label("n"),
        )
        .where(recent.c.duration_ms.is_not(None))
        .subquery()
    )  # fmt: skip
    wanted = [(ranked.c.n * p + 99) // 100 for p in points]
    rows = c.execute(
        select(ranked.c.job, ranked.c.rank, ranked.c.n, ranked.c.duration_ms).where(
            or_(*(ranked.c.rank == rank for rank in wanted))
        )
    )
    found: dict[str, dict[int, int]] = {}
    for job, rank, n, duration in rows:
        for p in points:
            if rank == (n * p + 99) // 100:
                found.setdefault(job, {})[p] = int(duration)
    return found
