"""SQL of the automation domain, as functions of a connection inside a transaction.

Both engines run these as they are. A poll holds its automation under a lease taken with
one conditional UPDATE; its events, the cursor's advance and the runs the events start
are written together, only while that lease is still held.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, text, update

from cronlink.automations.model import (
    Automation,
    AutomationEvent,
    AutomationState,
    Cursor,
    EventState,
    Work,
)
from cronlink.errors import AutomationNotFoundError, ConfigError
from cronlink.records import RunState, Tier
from cronlink.store import queries
from cronlink.store.schema import automation_events as events
from cronlink.store.schema import automations as table
from cronlink.store.schema import connection_events, connections, runs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    from sqlalchemy import Connection as Db

    from cronlink.records import NewRun
    from cronlink.store.automation_store import PollRecord

KEYS_PER_QUERY = 500
_OPEN = (EventState.PENDING.value, EventState.RUNNING.value)


def _automation(values: Mapping[Any, Any]) -> Automation:
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


def _event(values: Mapping[Any, Any]) -> AutomationEvent:
    return AutomationEvent(
        id=values["id"], automation_id=values["automation_id"], key=values["key"],
        state=EventState(values["state"]), data=json.loads(values["data"]),
        seen_at=values["seen_at"], run_id=values["run_id"], step=values["step"],
        replays=values["replays"],
        outputs=json.loads(values["outputs"]), error=values["error"],
        started_at=values["started_at"], finished_at=values["finished_at"],
    )  # fmt: skip


def cursor_json(cursor: Cursor) -> str:
    return json.dumps(dataclasses.asdict(cursor))


# -- automations ----------------------------------------------------------------------


def insert_automation(c: Db, values: dict[str, Any], now: datetime) -> Automation:
    """`values` are the columns, with `params`, `steps` (JSON values) and `cursor`."""
    if c.execute(select(table.c.id).where(table.c.name == values["name"])).first():
        raise ConfigError(f"an automation named {values['name']!r} exists already")
    encoded = {
        **values, "params": json.dumps(values["params"]), "steps": json.dumps(values["steps"]),
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


def get_automation(c: Db, automation_id: int | str) -> Automation:
    column = table.c.name if isinstance(automation_id, str) else table.c.id
    row = c.execute(select(table).where(column == automation_id)).first()
    if row is None:
        raise AutomationNotFoundError(f"no automation {automation_id!r}")
    return _automation(row._mapping)


def list_automations(
    c: Db, connection_id: int | None, after_id: int, limit: int
) -> list[Automation]:
    query = select(table).where(table.c.id > after_id)
    if connection_id is not None:
        query = query.where(table.c.connection_id == connection_id)
    return [_automation(r._mapping) for r in c.execute(query.order_by(table.c.id).limit(limit))]


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
    """Lease up to `limit` active triggered automations whose poll is due, on connections
    that are active and not throttled; with the provider of each."""
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
    return [(_automation(r._mapping), r._mapping["provider"]) for r in rows]


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
    c: Db, polls: list[PollRecord], now: datetime, run_for: Callable[[int, int], NewRun]
) -> list[list[int] | None]:
    """Store each poll's new events (keys already in the ledger are skipped), its cursor,
    and a run for each new event; None for a poll whose lease was lost, which writes
    nothing. The held rows are locked first, so no lease can change hands meanwhile."""
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
            c, p.automation.id, p.items, run_for, now,
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
    run_for: Callable[[int, int], NewRun],
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
            start_run(c, event_id, run_for(automation_id, event_id), now)
    if fired:
        notify(c, Tier.HEAVY)
    return fired


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
    automation_id: int,
    *,
    token: str,
    message: str,
    next_poll_at: datetime,
    now: datetime,
) -> None:
    c.execute(
        update(table)
        .where(table.c.id == automation_id, table.c.poll_lease == token)
        .values(
            poll_failures=table.c.poll_failures + 1, last_error=message, last_poll_at=now,
            next_poll_at=next_poll_at, poll_lease=None, poll_lease_until=None, updated_at=now,
        )
    )  # fmt: skip


def throttle(c: Db, connection_id: int, until: datetime) -> None:
    """Pause every call to the connection's account until `until` (never shortening a
    pause another job recorded)."""
    c.execute(
        update(connections)
        .where(
            connections.c.id == connection_id,
            or_(connections.c.throttled_until.is_(None), connections.c.throttled_until < until),
        )
        .values(throttled_until=until)
    )


def throttled_until(c: Db, connection_id: int) -> datetime | None:
    row = c.execute(
        select(connections.c.throttled_until).where(connections.c.id == connection_id)
    ).first()
    return None if row is None else row[0]


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
    flagged = [_automation(r._mapping) for r in c.execute(select(table).where(stale))]
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


# -- events -----------------------------------------------------------------------------


def start_run(c: Db, event_id: int, run: NewRun, now: datetime) -> int:
    run_id = queries.enqueue(c, run, now)
    c.execute(update(events).where(events.c.id == event_id).values(run_id=run_id))
    return run_id


def notify(c: Db, tier: Tier) -> None:
    """Wake the tier's workers on PostgreSQL when this transaction commits (SQLite's
    workers in other processes poll)."""
    if c.dialect.name == "postgresql":
        c.execute(text("SELECT pg_notify(:channel, '')"), {"channel": f"cronlink_{tier.value}"})


def get_event(c: Db, event_id: int) -> AutomationEvent:
    row = c.execute(select(events).where(events.c.id == event_id)).first()
    if row is None:
        raise AutomationNotFoundError(f"no event {event_id}")
    return _event(row._mapping)


def list_events(
    c: Db, automation_id: int | None, state: EventState | None, after_id: int, limit: int
) -> list[AutomationEvent]:
    query = select(events).where(events.c.id > after_id)
    if automation_id is not None:
        query = query.where(events.c.automation_id == automation_id)
    if state is not None:
        query = query.where(events.c.state == state.value)
    return [_event(r._mapping) for r in c.execute(query.order_by(events.c.id).limit(limit))]


def take_event(c: Db, automation_id: int, run_id: int, now: datetime) -> Work | None:
    """The event `run_id` already holds (an attempt after a crash), or the oldest pending
    one if the automation has a free slot; None otherwise. The automation's row is locked
    first: on PostgreSQL two runs counting its slots at once would both find one free."""
    _lock_automation(c, automation_id)
    automation = get_automation(c, automation_id)
    mine = c.execute(
        select(events).where(
            events.c.automation_id == automation_id,
            events.c.state == EventState.RUNNING.value,
            events.c.run_id == run_id,
        )
    ).first()
    if mine is None:
        busy = c.execute(
            select(func.count()).where(
                events.c.automation_id == automation_id,
                events.c.state == EventState.RUNNING.value,
            )
        ).scalar_one()
        if busy >= automation.concurrency:
            return None
        oldest = c.execute(
            select(events.c.id)
            .where(
                events.c.automation_id == automation_id,
                events.c.state == EventState.PENDING.value,
            )
            .order_by(events.c.id)
            .limit(1)
        ).first()
        if oldest is None:
            return None
        taken = c.execute(
            update(events)
            .where(events.c.id == oldest[0], events.c.state == EventState.PENDING.value)
            .values(state=EventState.RUNNING.value, run_id=run_id, started_at=now, error=None)
        ).rowcount
        if not taken:
            return None
        mine = c.execute(select(events).where(events.c.id == oldest[0])).first()
    assert mine is not None
    provider = c.execute(
        select(connections.c.provider).where(connections.c.id == automation.connection_id)
    ).scalar()
    return Work(event=_event(mine._mapping), automation=automation, provider=provider or "")


def _lock_automation(c: Db, automation_id: int) -> None:
    """Serialise the transactions that hand out or settle an automation's events (SQLite
    serialises every write transaction already; FOR UPDATE is PostgreSQL's)."""
    c.execute(select(table.c.id).where(table.c.id == automation_id).with_for_update())


def save_progress(
    c: Db,
    event_id: int,
    run_id: int,
    *,
    state: EventState,
    step: int,
    outputs: dict[str, Any],
    error: str | None,
    now: datetime,
) -> bool:
    """Checkpoint (state `running`) or finish an event the run holds; False if it does not."""
    values: dict[str, Any] = {
        "state": state.value, "step": step, "outputs": json.dumps(outputs), "error": error,
    }  # fmt: skip
    if state is not EventState.RUNNING:
        values["finished_at"] = now
    return bool(
        c.execute(
            update(events)
            .where(
                events.c.id == event_id,
                events.c.run_id == run_id,
                events.c.state == EventState.RUNNING.value,
            )
            .values(values)
        ).rowcount
    )


def replay(
    c: Db, event_id: int, run_for: Callable[[int, int], NewRun], now: datetime
) -> AutomationEvent:
    """Process an event again: a dead letter from its failed step, a done one from the
    start. A pending or running event is left alone."""
    event = get_event(c, event_id)
    if event.state in (EventState.PENDING, EventState.RUNNING):
        raise ConfigError(f"event {event_id} is {event.state.value}; it is being processed")
    resumed = event.state is EventState.DEAD_LETTER
    c.execute(
        update(events)
        .where(events.c.id == event_id)
        .values(
            state=EventState.PENDING.value, step=event.step if resumed else 0,
            outputs=json.dumps(event.outputs if resumed else {}), error=None, finished_at=None,
            replays=event.replays if resumed else event.replays + 1,
        )
    )  # fmt: skip
    start_run(c, event_id, run_for(event.automation_id, event_id), now)
    notify(c, Tier.HEAVY)
    return get_event(c, event_id)


def pending_automations(c: Db, limit: int, run_id: int) -> list[int]:
    """Automations with pending events, or with events `run_id` holds (its earlier
    attempt died with them), the longest waiting first."""
    rows = c.execute(
        select(events.c.automation_id)
        .where(
            or_(
                events.c.state == EventState.PENDING.value,
                and_(events.c.state == EventState.RUNNING.value, events.c.run_id == run_id),
            )
        )
        .group_by(events.c.automation_id)
        .order_by(func.min(events.c.id))
        .limit(limit)
    )
    return [row[0] for row in rows]


def settle_orphan(
    c: Db, event: AutomationEvent, run_for: Callable[[int, int], NewRun], now: datetime
) -> str:
    """A pending event without a live run gets a new one; a running event whose run ended
    (dead after its attempts) goes to the dead-letter list. Checked again under the
    automation's lock, as `orphaned` read it in an earlier transaction: a run may have
    taken the event since. Returns what was done ("" when nothing was)."""
    _lock_automation(c, event.automation_id)
    now_event = c.execute(select(events).where(events.c.id == event.id)).first()
    if now_event is None or (now_event.state, now_event.run_id) != (
        event.state.value,
        event.run_id,
    ):
        return ""
    live = c.execute(
        select(runs.c.state, runs.c.error_message).where(runs.c.id == event.run_id)
    ).first()
    if live is not None and live[0] in (RunState.QUEUED.value, RunState.RUNNING.value):
        return ""
    if event.state is EventState.PENDING:
        start_run(c, event.id, run_for(event.automation_id, event.id), now)
        notify(c, Tier.HEAVY)
        return "restarted"
    why = f"its run {event.run_id} ended {live[0]}: {live[1]}" if live else "its run is gone"
    c.execute(
        update(events)
        .where(events.c.id == event.id, events.c.state == EventState.RUNNING.value)
        .values(state=EventState.DEAD_LETTER.value, error=why[:2000], finished_at=now)
    )
    return "dead_letter"


def orphaned(c: Db, limit: int) -> list[AutomationEvent]:
    """Open events whose run has finished without finishing them (a run that died, or a
    run that left because another held the automation's slot just then)."""
    rows = c.execute(
        select(events)
        .join(runs, runs.c.id == events.c.run_id, isouter=True)
        .where(
            events.c.state.in_(_OPEN),
            or_(
                runs.c.id.is_(None),
                runs.c.state.not_in([RunState.QUEUED.value, RunState.RUNNING.value]),
            ),
        )
        .order_by(events.c.id)
        .limit(limit)
    )
    return [_event(r._mapping) for r in rows]


def purge(c: Db, before: datetime) -> int:
    """Forget finished events seen before `before` (the ledger is a time window); dead
    letters stay until they are replayed."""
    return int(
        c.execute(
            delete(events).where(
                events.c.seen_at < before,
                events.c.state.in_([EventState.DONE.value, EventState.BASELINE.value]),
            )
        ).rowcount
    )


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
    return [_automation(r._mapping) for r in rows]


def set_next_poll(
    c: Db, automation_id: int, next_at: datetime | None, interval: timedelta | None = None
) -> None:
    values: dict[str, Any] = {"next_poll_at": next_at}
    if interval is not None:
        values["interval_s"] = int(interval.total_seconds())
    c.execute(update(table).where(table.c.id == automation_id).values(values))
