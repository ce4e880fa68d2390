"""Schedule overrides (`store.overrides`): a job's schedules as changed through the admin
API, and its stored schedule rows changed with them in the same transaction."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select

from cronlink.storable import to_json
from cronlink.store.schema import schedule_overrides, schedules
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Connection

    from cronlink.records.runs import Schedule

Pairs = list[tuple[str, str]]
"""(cron, time zone) of each schedule."""


def _all(c: Connection) -> dict[str, Pairs]:
    """Every job's override, by job."""
    rows = c.execute(select(schedule_overrides.c.job, schedule_overrides.c.schedules))
    return {job: [(cron, zone) for cron, zone in json.loads(text)] for job, text in rows}


def _replace(
    c: Connection, job: str, pairs: Pairs | None, rows: list[Schedule], now: datetime
) -> None:
    """Set the job's override (None: drop it, back to its configuration) and make its
    stored schedules `rows`: those it keeps keep their cursor, new ones start now."""
    c.execute(delete(schedule_overrides).where(schedule_overrides.c.job == job))
    if pairs is not None:
        c.execute(
            insert(schedule_overrides).values(job=job, schedules=to_json(pairs), updated_at=now)
        )
    keep = {r.key for r in rows}
    held = set(c.execute(select(schedules.c.key).where(schedules.c.job == job)).scalars())
    gone = list(held - keep)
    if gone:
        c.execute(delete(schedules).where(schedules.c.key.in_(gone)))
    new = [
        {"key": r.key, "job": r.job, "cron": r.cron, "timezone": r.timezone,
         "cursor": r.cursor, "next_at": r.next_at}
        for r in rows if r.key not in held
    ]  # fmt: skip
    if new:
        c.execute(insert(schedules), new)


class OverrideStore(SubStore):
    all = reads(_all)
    replace = writes(_replace)
