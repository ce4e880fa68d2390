"""SQL of automation events after they are recorded: handed to runs one slot at a time,
checkpointed, finished, replayed, settled when their run ended without them, forgotten.

Handing out and settling lock the automation's row first: on PostgreSQL, two runs counting
an automation's free slots at once would otherwise both find one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, or_, select, update

from cronlink.errors import AutomationNotFoundError, ConfigError
from cronlink.records.automations import AutomationEvent, EventState, Work
from cronlink.records.runs import RunState, Tier
from cronlink.storable import escaped
from cronlink.store import automation_queries as q
from cronlink.store import queries
from cronlink.store.schema import automation_events as events
from cronlink.store.schema import automations as table
from cronlink.store.schema import connections, runs

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sqlalchemy import Connection as Db

    from cronlink.records.runs import NewRun

_OPEN = (EventState.PENDING.value, EventState.RUNNING.value)


def _event(values: Mapping[Any, Any]) -> AutomationEvent:
    return AutomationEvent(
        id=values["id"], automation_id=values["automation_id"], key=values["key"],
        state=EventState(values["state"]), data=json.loads(values["data"]),
        seen_at=values["seen_at"], run_id=values["run_id"], step=values["step"],
        replays=values["replays"],
        outputs=json.loads(values["outputs"]), error=values["error"],
        started_at=values["started_at"], finished_at=values["finished_at"],
    )  # fmt: skip


def get_event(c: Db, event_id: int) -> AutomationEvent:
    row = c.execute(select(events).where(events.c.id == event_id)).first()
    if row is None:
        raise AutomationNotFoundError(f"no event {event_id}")
    return _event(row._mapping)


def list_events(
    c: Db,
    automation_id: int | None = None,
    state: EventState | None = None,
    after_id: int = 0,
    limit: int = 100,
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
    automation = q.get_automation(c, automation_id)
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
        "state": state.value, "step": step, "outputs": json.dumps(outputs),
        "error": None if error is None else escaped(error),
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


def replay(c: Db, event_id: int, run: NewRun | None, now: datetime) -> AutomationEvent:
    """Process an event again, with `run` for it (`automation_queries.event_run`): a dead
    letter from its failed step, a done one from the start. A pending or running event is
    left alone."""
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
    q.start_run(c, event.automation_id, event_id, run, now)
    queries.notify(c, Tier.HEAVY)
    return get_event(c, event_id)


def pending_automations(c: Db, limit: int, run_id: int = 0) -> list[int]:
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


def settle_orphan(c: Db, event: AutomationEvent, run: NewRun | None, now: datetime) -> str:
    """A pending event without a live run gets a new one (`run` for it: see
    `automation_queries.event_run`); a running event whose run ended
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
        q.start_run(c, event.automation_id, event.id, run, now)
        queries.notify(c, Tier.HEAVY)
        return "restarted"
    why = f"its run {event.run_id} ended {live[0]}: {live[1]}" if live else "its run is gone"
    c.execute(
        update(events)
        .where(events.c.id == event.id, events.c.state == EventState.RUNNING.value)
        .values(state=EventState.DEAD_LETTER.value, error=escaped(why)[:2000], finished_at=now)
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
