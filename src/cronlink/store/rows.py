"""Rows to records and back, shared by every engine."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cronlink.records.runs import (
    Fate,
    Fire,
    Overlap,
    Reason,
    Run,
    RunError,
    RunState,
    Schedule,
    Tier,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import Row


def run_from_row(row: Row[Any]) -> Run:
    return run_from_mapping(row._mapping)


def run_from_mapping(m: Mapping[Any, Any]) -> Run:
    """A `Run` from column values (instants already as aware datetimes)."""
    error = None
    if m["error_type"]:
        error = RunError(
            type=m["error_type"],
            message=m["error_message"] or "",
            traceback=m["error_traceback"] or "",
            reason=m["error_reason"] or "",
        )
    scheduled_for = m["scheduled_for"]
    return Run(
        id=m["id"],
        job=m["job"],
        tier=Tier(m["tier"]),
        reason=Reason(m["reason"]),
        state=RunState(m["state"]),
        payload=None if m["payload"] is None else json.loads(m["payload"]),
        scheduled_for=scheduled_for,
        enqueued_at=m["enqueued_at"],
        not_before=m["not_before"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        overlap=Overlap(m["overlap"]),
        idempotency_key=(
            f"{m['job']}@{scheduled_for.isoformat()}" if scheduled_for else f"{m['job']}#{m['id']}"
        ),
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        worker=m["worker"],
        lease_token=m["lease_token"],
        lease_expires_at=m["lease_expires_at"],
        cancel_requested=bool(m["cancel_requested"]),
        error=error,
        result=m["result"],
        duration_ms=m["duration_ms"],
        peak_memory=m["peak_memory"],
        requests=m["requests"],
        cpu_ms=m["cpu_ms"],
        memory_mib_s=m["memory_mib_s"],
        traceparent=m["traceparent"],
    )


def fire_from_row(row: Row[Any]) -> Fire:
    m = row._mapping
    return Fire(
        job=m["job"],
        scheduled_for=m["scheduled_for"],
        fate=Fate(m["fate"]),
        run_id=m["run_id"],
        recorded_at=m["recorded_at"],
    )


def schedule_from_row(row: Row[Any]) -> Schedule:
    m = row._mapping
    return Schedule(
        key=m["key"],
        job=m["job"],
        cron=m["cron"],
        timezone=m["timezone"],
        cursor=m["cursor"],
        next_at=m["next_at"],
    )
