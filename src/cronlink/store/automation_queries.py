"""SQL of automations and their polls, as functions of a connection inside a transaction
(the events' own lifecycle: `event_queries`).

Both engines run these as they are. A poll holds its automation under a lease taken with
one conditional UPDATE; its events, the cursor's advance and the runs the events start
are written together, only while that lease is still held.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update

from cronlink.errors import AutomationNotFoundError, ConfigError
from cronlink.records.automations import (
    Automation,
    AutomationState,
    Cursor,
    EventState,
    PollRecord,
)
from cronlink.records.runs import RunState, Tier
from cronlink.storable import escaped, to_json
from cronlink.store import queries
from cronlink.store.schema import automation_events as events
from cronlink.store.schema import automations as table
from cronlink.store.schema import connection_events, connections, runs

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sqlalchemy import Connection as Db

    from cronlink.records.runs import NewRun

KEYS_PER_QUERY = 500
NO_PROCESS_JOB = "automations need the process-automation job ([connections])"


def event_run(run: NewRun | None, automation_id: int, event_id: int, now: datetime) -> NewRun:
    """`run` (the process-automation job's) for one event: the event in its payload, and a
    dedupe key of the event and the instant, so that each replay starts a run of its own.
    `run` None: there is no such job, and an event that needs a run is refused."""
    if run is None:
        raise ConfigError(NO_PROCESS_JOB)
    return dataclasses.replace(
        run,
        payload={"automation_id": automation_id, "event_id": event_id},
        dedupe_key=f"automation-event:{event_id}:{now.timestamp()}",
    )


def automation_from(values: Mapping[Any, Any]) -> Automation:
    return Automation(
        id=values["id"], name=values["name"], connection_id=values["connection_id"],
        trigger=values["trigger"], params=json.loads(values["params"]),
        steps=json.loads(values["steps"]), schedule=values["schedule"],
        interval=timedelta(seconds=values["interval_s"]),
        offset=timedelta(seconds=values["offset_s"]), concurrency=values["concurrency"],
        state=AutomationState(values["state"]), cursor=Cursor(**json.loads(values["cursor"])),
        next_poll_at=values["next_poll_at"], last_poll_at=values["last_poll_at"],
        last_success_at=values["last_success_at"], advanced_at=values["advanced_at"],
        poll_failures=values["poll_failures"], last_error=values["last_error"],
        stalled=bool(values["stalled"]), created_at=values["created_at"],
        updated_at=values["updated_at"],
    )  # fmt: skip


def cursor_json(cursor: Cursor) -> str:
    return json.dumps(dataclasses.asdict(cursor))


def insert_automation(c: Db, values: dict[str, Any], now: datetime) -> Automation:
    """`values` are the columns, with `params`, `steps` (JSON values) and `cursor`."""
    if c.execute(select(table.c.id).where(table.c.name == values["name"])).first():
        raise ConfigError(f"an automation named {values['name']!r} exists already")
    encoded = {
        **values, "params": to_json(values["params"]), "steps": to_json(values["steps"]),
        "cursor": cursor_json(values["cursor"]),
    }  # fmt: skip
    new_id = c.execute(
        insert(table)
        .values(
            **encoded, state=AutomationState.ACTIVE.value, poll_failures=0, stalled=False,
            advanced_at=now, created_at=now, updated_at=now,
        )
        .returning(table.c.id)
    ).scalar_one()  # fmt: skip
    return get_automation(c, new_id)


def get_automation(c: Db, automation: int | str) -> Automation:
    """By id, or by name when given a string."""
    column = table.c.name if isinstance(automation, str) else table.c.id
    row = c.execute(select(table).where(column == automation)).first()
    if row is None:
        raise AutomationNotFoundError(f"no automation {automation!r}")
    return automation_from(row._mapping)


def list_automations(
    c: Db, *, connection_id: int | None = None, after_id: int = 0, limit: int = 100
) -> list[Automation]:
    query = select(table).where(table.c.id > after_id)
    if connection_id is not None:
        query = query.where(table.c.connection_id == connection_id)
    return [automation_from(r._mapping) for r in c.execute(query.order_by(table.c.id).limit(limit))]


def set_state(c: Db, automation_id: int, state: AutomationState, now: datetime) -> Automation:
    found = c.execute(
        update(table).where(table.c.id == automation_id).values(state=state.value, updated_at=now)
    ).rowcount
    if not found:
        raise AutomationNotFoundError(f"no automation {automation_id!r}")
    return get_automation(c, automation_id)


def delete_automation(c: Db, automation_id: int) -> None:
    """Delete an automation and its event ledger (runs already queued find nothing)."""
    c.execute(delete(events).where(events.c.automation_id == automation_id))
    if not c.execute(delete(table).where(table.c.id == automation_id)).rowcount:
        raise AutomationNotFoundError(f"no automation {automation_id!r}")


def take_due(
    c: Db, now: datetime, limit: int, token: str, until: datetime
) -> list[tuple[Automation, str]]:
    """Lease up to `limit` active triggered automations whose poll is due (for one poll
    each), on connections that are active and not throttled; with the provider of each."""
    due = (
        select(table.c.id)
        .join(connections, connections.c.id == table.c.connection_id)
        .where(
            table.c.state == AutomationState.ACTIVE.value,
            table.c.trigger.is_not(None),
            table.c.next_poll_at <= now,
            or_(table.c.poll_lease_until.is_(None), table.c.poll_lease_until < now),
            connections.c.state == "active",
            or_(connections.c.throttled_until.is_(None), connections.c.throttled_until <= now),
        )
        .order_by(table.c.next_poll_at)
        .limit(limit)
    )
    ids = [row[0] for row in c.execute(due)]
    if not ids:
        return []
    c.execute(
        update(table)
        .where(
            table.c.id.in_(ids),
            or_(table.c.poll_lease_until.is_(None), table.c.poll_lease_until < now),
        )
        .values(poll_lease=token, poll_lease_until=until)
    )
    rows = c.execute(
        select(table, connections.c.provider)
        .join(connections, connections.c.id == table.c.connection_id)
        .where(table.c.id.in_(ids), table.c.poll_lease == token)
        .order_by(table.c.next_poll_at)
    )
    return [(automation_from(r._mapping), r._mapping["provider"]) for r in rows]


def _save_poll(advanced: bool) -> Any:
    values: dict[str, Any] = {
        "cursor": bindparam("cursor"), "next_poll_at": bindparam("next_poll_at"),
        "poll_lease": None, "poll_lease_until": None, "last_poll_at": bindparam("now"),
        "last_success_at": bindparam("now"), "poll_failures": 0, "last_error": None,
        "updated_at": bindparam("now"),
    }  # fmt: skip
    if advanced:
        values |= {"advanced_at": bindparam("now"), "stalled": False}
    return update(table).where(table.c.id == bindparam("aid")).values(values)


# Built once: a poll's commit is the hot path of polling (bench/poll_bench.py).
_SAVE_POLL = {advanced: _save_poll(advanced) for advanced in (False, True)}


def record_polls(
    c: Db, polls: list[PollRecord], now: datetime, run: NewRun | None
) -> list[list[int] | None]:
    """Commit several polls in one transaction: each poll's new events (keys already in
    the ledger are skipped), its cursor, and a run for each new event. Returns per poll the
    ids of its new events, or None where the lease was lost (that poll writes nothing).
    Each event's run is `run` for that event (`event_run`).
    The held rows are locked first, so no lease can change hands meanwhile."""
    held = _held(c, polls)
    saves: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for poll in polls:
        if poll.automation.id not in held:
            continue
        before = poll.automation.cursor
        advanced = poll.cursor.watermark != before.watermark or poll.cursor.token != before.token
        saves[advanced].append({
            "aid": poll.automation.id, "cursor": cursor_json(poll.cursor),
            "next_poll_at": poll.next_poll_at, "now": now,
        })  # fmt: skip
    for advanced, rows in saves.items():
        if rows:
            c.execute(_SAVE_POLL[advanced], rows)
    return [
        insert_events(
            c, p.automation.id, p.items, run, now,
            baseline=p.baseline if p.fire else {k for k, _ in p.items},
        )
        if p.automation.id in held
        else None
        for p in polls
    ]  # fmt: skip


def _held(c: Db, polls: list[PollRecord]) -> set[int]:
    held: set[int] = set()
    by_token: dict[str, list[int]] = {}
    for poll in polls:
        by_token.setdefault(poll.token, []).append(poll.automation.id)
    for token, ids in by_token.items():
        for start in range(0, len(ids), KEYS_PER_QUERY):
            chunk = ids[start : start + KEYS_PER_QUERY]
            rows = c.execute(
                select(table.c.id)
                .where(table.c.id.in_(chunk), table.c.poll_lease == token)
                .with_for_update()
            )
            held.update(row[0] for row in rows)
    return held


def insert_events(
    c: Db,
    automation_id: int,
    items: list[tuple[str, Any]],
    run: NewRun | None,
    now: datetime,
    *,
    baseline: set[str] | frozenset[str] = frozenset(),
) -> list[int]:
    """Add the items whose key the ledger lacks, each with a run, except those in
    `baseline` (recorded so that they never fire). Returns the ids of the fired ones."""
    if not items:
        return []
    fired: list[int] = []
    for key, item in _unseen(c, automation_id, items):
        state = EventState.BASELINE if key in baseline else EventState.PENDING
        event_id = c.execute(
            insert(events)
            .values(
                automation_id=automation_id, key=key, state=state.value,
                data=json.dumps(item), seen_at=now, step=0, outputs="{}",
            )
            .returning(events.c.id)
        ).scalar_one()  # fmt: skip
        if state is EventState.PENDING:
            fired.append(event_id)
    if fired:
        _start_runs(c, automation_id, fired, run, now)
        queries.notify(c, Tier.HEAVY)
    return fired


def _start_runs(
    c: Db, automation_id: int, fired: list[int], run: NewRun | None, now: datetime
) -> None:
    """Give new events runs: one queued run per slot of the automation's concurrency at
    most, not one per event. Each run drains the automation's pending events, so events
    join the runs already queued for it, and a burst of a thousand costs a few runs (each
    a process on the heavy tier), not a thousand.

    The queued runs are locked until the commit: a worker's claim skips them meanwhile
    (PostgreSQL's SKIP LOCKED; SQLite has one writer at a time), so a run taken here has
    not started draining yet and sees these events when it does."""
    slots = c.execute(select(table.c.concurrency).where(table.c.id == automation_id)).scalar_one()
    wanted = max(1, slots)
    waiting = select(events.c.run_id).where(
        events.c.automation_id == automation_id,
        events.c.state == EventState.PENDING.value,
        events.c.run_id.is_not(None),
    )
    queued = list(
        c.execute(
            select(runs.c.id)
            .where(runs.c.id.in_(waiting), runs.c.state == RunState.QUEUED.value)
            .order_by(runs.c.id)
            .limit(wanted)
            .with_for_update()
        ).scalars()
    )
    started = queued + [
        queries.enqueue(c, event_run(run, automation_id, event_id, now), now)
        for event_id in fired[: wanted - len(queued)]
    ]
    for index, event_id in enumerate(fired):
        run_id = started[index % len(started)]
        c.execute(update(events).where(events.c.id == event_id).values(run_id=run_id))


def _unseen(c: Db, automation_id: int, items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The items whose key the ledger does not hold, first occurrence of each, in order."""
    unique: dict[str, Any] = {}
    for key, item in items:
        unique.setdefault(key, item)
    keys = list(unique)
    seen: set[str] = set()
    for start in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[start : start + KEYS_PER_QUERY]
        seen.update(
            row[0]
            for row in c.execute(
                select(events.c.key).where(
                    events.c.automation_id == automation_id, events.c.key.in_(chunk)
                )
            )
        )
    return [(k, unique[k]) for k in keys if k not in seen]


def record_poll_failure(
    c: Db,
    automation: Automation,
    *,
    token: str,
    message: str,
    next_poll_at: datetime,
    counted: bool,
    now: datetime,
) -> None:
    """Keep the cursor, release the lease, poll again at `next_poll_at`; a poll that
    only waited out a pause (not `counted`) leaves the failure count as it was."""
    values: dict[str, Any] = {
        "last_error": escaped(message), "last_poll_at": now, "next_poll_at": next_poll_at,
        "poll_lease": None, "poll_lease_until": None, "updated_at": now,
    }  # fmt: skip
    if counted:
        values["poll_failures"] = table.c.poll_failures + 1
    c.execute(
        update(table)
        .where(table.c.id == automation.id, table.c.poll_lease == token)
        .values(**values)
    )


def mark_stalled(
    c: Db, before: datetime, failing_since: datetime, now: datetime
) -> list[Automation]:
    """Flag active automations whose watermark has not moved since `before`, or whose
    polls have failed since `failing_since`; returns those newly flagged."""
    stale = and_(
        table.c.state == AutomationState.ACTIVE.value,
        table.c.trigger.is_not(None),
        table.c.stalled.is_(False),
        or_(
            table.c.advanced_at < before,
            and_(
                table.c.poll_failures > 0,
                func.coalesce(table.c.last_success_at, table.c.created_at) < failing_since,
            ),
        ),
    )
    flagged = [automation_from(r._mapping) for r in c.execute(select(table).where(stale))]
    for automation in flagged:
        c.execute(
            update(table).where(table.c.id == automation.id).values(stalled=True, updated_at=now)
        )
        why = automation.last_error if automation.poll_failures else "no new item"
        detail = f"automation {automation.name}: trigger stalled ({why})"
        c.execute(
            insert(connection_events).values(
                connection_id=automation.connection_id,
                at=now,
                kind="trigger_stalled",
                detail=detail,
            )
        )
    return flagged


def start_run(c: Db, automation_id: int, event_id: int, run: NewRun | None, now: datetime) -> int:
    """Queue the event's run (`event_run`) and record it on the event."""
    run_id = queries.enqueue(c, event_run(run, automation_id, event_id, now), now)
    c.execute(update(events).where(events.c.id == event_id).values(run_id=run_id))
    return run_id


def due_scheduled(c: Db, now: datetime, limit: int) -> list[Automation]:
    rows = c.execute(
        select(table)
        .where(
            table.c.state == AutomationState.ACTIVE.value,
            table.c.schedule.is_not(None),
            table.c.next_poll_at <= now,
        )
        .order_by(table.c.next_poll_at)
        .limit(limit)
    )
    return [automation_from(r._mapping) for r in rows]


def add_event(
    c: Db,
    automation: Automation,
    key: str,
    data: Any,
    next_at: datetime | None,
    run: NewRun | None,
    now: datetime,
) -> list[int]:
    """A scheduled automation's event for one instant (once per key), its run (`run` for
    the event: `event_run`), and the next instant, in one transaction."""
    c.execute(update(table).where(table.c.id == automation.id).values(next_poll_at=next_at))
    return insert_events(c, automation.id, [(key, data)], run, now)
