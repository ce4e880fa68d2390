"""Alerts' verbs (`store.alerts`): what the rules read, each alert's state, the messages
it owes, and the rate-limit windows.

Several evaluators may share one database: every change of state is a compare-and-swap
(an insert that ignores a key already there, an update conditioned on the state read), so
each start, recovery and message is decided once whoever evaluates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.records.alerts import Alert, AlertState, Owed
from cronlink.store import alert_queries
from cronlink.store.schema import alert_windows, alerts
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

    from sqlalchemy import ColumnElement, Connection, Row

    from cronlink.records.alerts import Finding

CAS_TRIES = 20


def _claim(c: Connection, token: str, until: datetime, now: datetime, limit: int) -> list[Alert]:
    """Take up to `limit` alerts owing a message under a lease no one else holds."""
    unleased = or_(alerts.c.lease_until.is_(None), alerts.c.lease_until < now)
    free = and_(alerts.c.owed.is_not(None), unleased)
    chosen = select(alerts.c.key).where(free).order_by(alerts.c.since).limit(limit)
    c.execute(
        update(alerts)
        .where(free, alerts.c.key.in_(chosen.scalar_subquery()))
        .values(lease_token=token, lease_until=until)
    )
    rows = c.execute(select(alerts).where(alerts.c.lease_token == token).order_by(alerts.c.since))
    return [_alert(r) for r in rows]


def _settle(c: Connection, key: str, token: str, sent: Owed | None, now: datetime) -> None:
    """Release the lease; `sent`: the message that went out, no longer owed (unless the
    alert flipped meanwhile: then it owes the other one)."""
    held = and_(alerts.c.key == key, alerts.c.lease_token == token)
    if sent is not None:
        c.execute(
            update(alerts)
            .where(held, alerts.c.owed == sent.value)
            .values(owed=None, notified_at=now)
        )
    c.execute(update(alerts).where(held).values(lease_token=None, lease_until=None))


def _take_slots(c: Connection, window: datetime, wanted: int, cap: int) -> int:
    """Take up to `wanted` of the `cap` messages of the window starting at `window`;
    returns how many were taken (0 when it is full). Older windows are forgotten."""
    c.execute(delete(alert_windows).where(alert_windows.c.start < window))
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    c.execute(
        dialect.insert(alert_windows)
        .values(start=window, sent=0)
        .on_conflict_do_nothing(index_elements=["start"])
    )
    for _ in range(CAS_TRIES):
        sent: int = c.execute(
            select(alert_windows.c.sent).where(alert_windows.c.start == window)
        ).scalar_one()
        taking = min(wanted, cap - sent)
        if taking <= 0:
            return 0
        swapped = c.execute(
            update(alert_windows)
            .where(alert_windows.c.start == window, alert_windows.c.sent == sent)
            .values(sent=sent + taking)
        ).rowcount
        if swapped:
            return taking
    return 0


def _list(c: Connection, state: AlertState | None = AlertState.FIRING) -> list[Alert]:
    """Alerts in `state` (None: all), the oldest first."""
    query = select(alerts).order_by(alerts.c.since, alerts.c.key)
    if state is not None:
        query = query.where(alerts.c.state == state.value)
    return [_alert(r) for r in c.execute(query)]


def _reconcile(
    c: Connection, found: Sequence[Finding], now: datetime, repeat: timedelta | None = None
) -> tuple[list[str], list[str]]:
    """Make the firing alerts exactly `found`; returns the keys that started firing and
    those that recovered, by this call. Each owes its message; a message not sent yet
    when its alert flips back is dropped instead (its channels never heard of it)."""
    # One order of keys for every evaluator: concurrent ones lock rows in the same order.
    read = select(alerts.c.key, alerts.c.state, alerts.c.subject, alerts.c.body)
    known = {r.key: r for r in c.execute(read.order_by(alerts.c.key))}
    started: list[str] = []
    for finding in sorted(found, key=lambda f: f.key):
        row = known.get(finding.key)
        text = {"rule": finding.rule, "subject": finding.subject, "body": finding.body}
        if row is None:
            if _insert(c, finding, now):
                started.append(finding.key)
        elif row.state == AlertState.RESOLVED.value:
            if _flip(c, finding.key, AlertState.RESOLVED, now, text | {"resolved_at": None}):
                started.append(finding.key)
        elif (row.subject, row.body) != (finding.subject, finding.body):
            c.execute(update(alerts).where(alerts.c.key == finding.key).values(text))
    keys = {f.key for f in found}
    resolved: list[str] = []
    for key, row in known.items():
        gone = row.state == AlertState.FIRING.value and key not in keys
        if gone and _flip(c, key, AlertState.FIRING, now, {"resolved_at": now}):
            resolved.append(key)
    if repeat is not None:
        c.execute(
            update(alerts)
            .where(alerts.c.state == AlertState.FIRING.value, alerts.c.owed.is_(None),
                   alerts.c.notified_at < now - repeat)
            .values(owed=Owed.FIRING.value)
        )  # fmt: skip
    return started, resolved


def _insert(c: Connection, finding: Finding, now: datetime) -> bool:
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(alerts)
        .values(key=finding.key, rule=finding.rule, subject=finding.subject, body=finding.body,
                state=AlertState.FIRING.value, since=now, owed=Owed.FIRING.value)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(alerts.c.key)
    )  # fmt: skip
    return c.execute(statement).first() is not None


def _flip(c: Connection, key: str, was: AlertState, now: datetime, values: dict[str, Any]) -> bool:
    """Move `key` out of state `was`, if it is still in it. The message it owes becomes
    this change's, or none when the opposite one was never sent (nor is being sent)."""
    becomes, owes, cancels = (
        (AlertState.FIRING, Owed.FIRING, Owed.RECOVERED)
        if was is AlertState.RESOLVED
        else (AlertState.RESOLVED, Owed.RECOVERED, Owed.FIRING)
    )
    unsent: ColumnElement[bool] = and_(
        alerts.c.owed == cancels.value,
        or_(alerts.c.lease_until.is_(None), alerts.c.lease_until < now),
    )
    changes = dict(values, state=becomes.value, owed=case((unsent, None), else_=owes.value))
    if becomes is AlertState.FIRING:
        changes["since"] = now
    swapped = c.execute(
        update(alerts).where(alerts.c.key == key, alerts.c.state == was.value).values(changes)
    ).rowcount
    return bool(swapped)


def _alert(row: Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        key=m["key"], rule=m["rule"], subject=m["subject"], body=m["body"],
        state=AlertState(m["state"]), since=m["since"], resolved_at=m["resolved_at"],
        notified_at=m["notified_at"], owed=Owed(m["owed"]) if m["owed"] else None,
    )  # fmt: skip


class AlertStore(SubStore):
    facts = reads(alert_queries.facts)
    reconcile = writes(_reconcile)
    claim = writes(_claim)
    settle = writes(_settle)
    take_slots = writes(_take_slots)
    list = reads(_list)
