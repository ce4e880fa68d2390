"""The automation verbs, the same on both engines: poll leases, the event ledger, runs
started in the poll's transaction, slots per automation, checkpoints and settling."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlink.errors import ConfigError
from cronlink.records.automations import Automation, AutomationState, Cursor, EventState, PollRecord
from cronlink.records.runs import NewRun, Reason, RunState, Tier
from cronlink.store import RunFilter, Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


RUN = NewRun(job="process-automation", tier=Tier.HEAVY, reason=Reason.ENQUEUE)
"""The run each event starts; the store puts the event in its payload."""


async def _automation(store: Store, name: str = "inbox", concurrency: int = 1) -> Automation:
    connection = await store.connections.add(
        provider="sandbox", owner=name, scopes="", seal=lambda cid: ("sealed", "k"),
        expires_at=None, refresh_due_at=None, now=NOW,
    )  # fmt: skip
    return await store.automations.add(
        {"name": name, "connection_id": connection.id, "trigger": "new_item", "params": {},
         "steps": [{"name": "s", "call": "m:f"}], "schedule": None, "interval_s": 60,
         "offset_s": 7, "concurrency": concurrency, "cursor": Cursor(primed=True),
         "next_poll_at": NOW},
        NOW,
    )  # fmt: skip


def _record(automation: Automation, token: str, keys: list[str], watermark: int) -> PollRecord:
    return PollRecord(
        automation=automation, token=token, items=[(k, {"id": k}) for k in keys],
        cursor=Cursor(watermark=watermark, primed=True), next_poll_at=NOW + timedelta(minutes=1),
        fire=True,
    )  # fmt: skip


async def test_one_poller_holds_an_automation_until_its_lease_lapses(store: Store) -> None:
    automation = await _automation(store)
    taken = await asyncio.gather(
        *(store.automations.take_due(NOW, 10, f"t{i}", LEASE) for i in range(6))
    )
    assert sum(len(t) for t in taken) == 1
    assert taken[[len(t) for t in taken].index(1)][0][1] == "sandbox"
    assert await store.automations.take_due(NOW, 10, "late", LEASE) == []
    lapsed = LEASE + timedelta(seconds=1)
    assert len(await store.automations.take_due(lapsed, 10, "after", lapsed + timedelta(1))) == 1
    paused = await store.automations.set_state(automation.id, AutomationState.PAUSED, NOW)
    assert paused.state is AutomationState.PAUSED


async def test_a_poll_commits_events_cursor_and_runs_together_once(store: Store) -> None:
    automation = await _automation(store)
    [(held, _)] = await store.automations.take_due(NOW, 10, "mine", LEASE)
    [created] = await store.automations.record_polls(
        [_record(held, "mine", ["1", "2", "2", "3"], 3)], NOW, RUN
    )
    assert created is not None
    assert len(created) == 3
    # A poller whose lease was taken over writes nothing.
    assert await store.automations.record_polls([_record(held, "mine", ["4"], 4)], NOW, RUN) == [
        None
    ]
    later = NOW + timedelta(minutes=2)
    [(again, _)] = await store.automations.take_due(later, 10, "next", later + timedelta(1))
    assert again.cursor.watermark == 3
    [repeat] = await store.automations.record_polls(
        [_record(again, "next", ["2", "3", "4"], 4)], later, RUN
    )
    assert repeat is not None
    assert len(repeat) == 1  # the ledger absorbs what was seen
    events = await store.automations.events(automation.id)
    assert [e.key for e in events] == ["1", "2", "3", "4"]
    runs = await store.list_runs(RunFilter(job="process-automation"))
    # One run for the automation's one slot, not a run per event: the second poll's event
    # joins the run still queued, which drains them all.
    assert [r.payload["event_id"] for r in runs] == [events[0].id]
    assert {e.run_id for e in events} == {runs[0].id}


async def test_slots_order_checkpoints_and_replay(store: Store) -> None:
    automation = await _automation(store)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    await store.automations.record_polls([_record(held, "t", ["a", "b"], 2)], NOW, RUN)
    first = await store.automations.take_event(automation.id, 101, NOW)
    assert first is not None
    assert first.event.key == "a"
    assert await store.automations.take_event(automation.id, 102, NOW) is None  # one slot
    again = await store.automations.take_event(automation.id, 101, NOW)  # a retried attempt
    assert again is not None
    assert again.event.id == first.event.id
    saved: dict[str, Any] = {"s": {"checkpoint": 5}}
    assert await store.automations.save_progress(
        first.event.id, 101, state=EventState.RUNNING, step=0, outputs=saved, error=None, now=NOW
    )
    assert not await store.automations.save_progress(
        first.event.id, 102, state=EventState.DONE, step=1, outputs={}, error=None, now=NOW
    )
    assert await store.automations.save_progress(
        first.event.id, 101, state=EventState.DEAD_LETTER, step=0, outputs=saved, error="boom",
        now=NOW,
    )  # fmt: skip
    second = await store.automations.take_event(automation.id, 102, NOW)
    assert second is not None
    assert second.event.key == "b"
    replayed = await store.automations.replay(first.event.id, RUN, NOW + timedelta(minutes=1))
    assert replayed.state is EventState.PENDING
    runs = await store.list_runs(RunFilter(job="process-automation"))
    assert (len(runs), runs[0].id) == (2, replayed.run_id)  # a new run, a key of its own
    assert replayed.outputs == saved  # a dead letter goes on from its checkpoint


async def test_a_burst_starts_a_run_per_slot_not_per_event(store: Store) -> None:
    automation = await _automation(store, concurrency=3)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    keys = [str(n) for n in range(1, 101)]
    await store.automations.record_polls([_record(held, "t", keys, 100)], NOW, RUN)
    runs = await store.list_runs(RunFilter(job="process-automation"))
    assert len(runs) == 3
    events = await store.automations.events(automation.id, limit=1000)
    assert {e.run_id for e in events} == {r.id for r in runs}
    # The three runs drain the hundred between them, three at a time.
    taken = [await store.automations.take_event(automation.id, r.id, NOW) for r in runs]
    assert all(work is not None for work in taken)
    assert await store.automations.take_event(automation.id, 999, NOW) is None
    # More events while they are queued join them; once they have started, new ones get
    # runs of their own.
    later = NOW + timedelta(minutes=2)
    [(again, _)] = await store.automations.take_due(later, 10, "u", later + timedelta(1))
    await store.automations.record_polls([_record(again, "u", ["101"], 101)], later, RUN)
    assert len(await store.list_runs(RunFilter(job="process-automation"))) == 3
    for queued in runs:
        await store.request_cancel(queued.id, NOW)  # no longer queued
    later += timedelta(minutes=2)
    [(third, _)] = await store.automations.take_due(later, 10, "v", later + timedelta(1))
    await store.automations.record_polls([_record(third, "v", ["102"], 102)], later, RUN)
    assert len(await store.list_runs(RunFilter(job="process-automation"))) == 4


async def test_orphans_are_settled_and_old_keys_forgotten(store: Store) -> None:
    automation = await _automation(store, concurrency=2)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    await store.automations.record_polls([_record(held, "t", ["a", "b"], 2)], NOW, RUN)
    runs = await store.list_runs(RunFilter(job="process-automation"))
    for run in runs:
        await store.request_cancel(run.id, NOW)
    work = await store.automations.take_event(automation.id, runs[0].id, NOW)
    assert work is not None
    orphans = await store.automations.orphaned(10)
    sweep = NOW + timedelta(minutes=1)
    settled = [await store.automations.settle_orphan(e, RUN, sweep) for e in orphans]
    assert sorted(settled) == ["dead_letter", "restarted"]
    states = {e.key: e.state for e in await store.automations.events(automation.id)}
    assert states == {"a": EventState.DEAD_LETTER, "b": EventState.PENDING}
    queued = await store.list_runs(RunFilter(job="process-automation", state=RunState.QUEUED))
    assert len(queued) == 1
    assert await store.automations.pending_automations(10) == [automation.id]
    await store.automations.save_progress(
        work.event.id, runs[0].id, state=EventState.DONE, step=1, outputs={}, error=None, now=NOW
    )
    assert await store.automations.purge(NOW + timedelta(days=31)) == 0  # dead letters stay


async def test_a_trigger_that_stands_still_is_flagged_once(store: Store) -> None:
    automation = await _automation(store)
    later = NOW + timedelta(hours=25)
    flagged = await store.automations.mark_stalled(NOW + timedelta(hours=1), NOW, later)
    assert [a.id for a in flagged] == [automation.id]
    assert await store.automations.mark_stalled(NOW + timedelta(hours=1), NOW, later) == []
    assert (await store.automations.get(automation.id)).stalled
    kinds = [e.kind for e in await store.connections.events(automation.connection_id)]
    assert kinds == ["created", "trigger_stalled"]


async def test_one_slot_is_handed_to_one_run_however_many_ask_at_once(store: Store) -> None:
    for trial in range(5):
        automation = await _automation(store, name=f"a{trial}")
        [(held, _)] = await store.automations.take_due(NOW, 10, f"t{trial}", LEASE)
        await store.automations.record_polls([_record(held, f"t{trial}", ["x", "y"], 2)], NOW, RUN)
        works = await asyncio.gather(
            *(store.automations.take_event(automation.id, 100 * trial + r, NOW) for r in range(8))
        )
        taken = [w for w in works if w is not None]
        assert len(taken) == 1
        events = await store.automations.events(automation.id)
        assert [e.state for e in events] == [EventState.RUNNING, EventState.PENDING]
        assert events[0].run_id == 100 * trial + works.index(taken[0])


async def test_an_orphan_taken_meanwhile_is_left_to_its_taker(store: Store) -> None:
    automation = await _automation(store)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    await store.automations.record_polls([_record(held, "t", ["x"], 1)], NOW, RUN)
    [run] = await store.list_runs(RunFilter(job="process-automation"))
    await store.request_cancel(run.id, NOW)
    [stale] = await store.automations.orphaned(10)
    taken = await store.automations.take_event(automation.id, 555, NOW)
    assert taken is not None
    assert await store.automations.settle_orphan(stale, RUN, NOW) == ""
    [event] = await store.automations.events(automation.id)
    assert (event.state, event.run_id) == (EventState.RUNNING, 555)


async def test_event_keys_are_kept_for_the_window_not_a_count(store: Store) -> None:
    automation = await _automation(store)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    await store.automations.record_polls([_record(held, "t", ["old"], 1)], NOW, RUN)
    later = NOW + timedelta(days=20)
    [(again, _)] = await store.automations.take_due(later, 10, "u", later + timedelta(1))
    await store.automations.record_polls([_record(again, "u", ["new"], 2)], later, RUN)
    for run_id, key in ((1, "old"), (2, "new")):
        work = await store.automations.take_event(automation.id, 900 + run_id, later)
        assert work is not None
        assert work.event.key == key
        await store.automations.save_progress(
            work.event.id, 900 + run_id, state=EventState.DONE, step=1, outputs={}, error=None,
            now=later,
        )  # fmt: skip
    window_starts = NOW + timedelta(days=30, seconds=1) - timedelta(days=30)  # now - retention
    assert await store.automations.purge(window_starts) == 1
    assert [e.key for e in await store.automations.events(automation.id)] == ["new"]


async def test_without_a_run_events_that_need_one_are_refused(store: Store) -> None:
    automation = await _automation(store)
    [(held, _)] = await store.automations.take_due(NOW, 10, "t", LEASE)
    baseline = dataclasses.replace(_record(held, "t", ["a"], 1), fire=False)
    assert await store.automations.record_polls([baseline], NOW, None) == [[]]
    later = NOW + timedelta(minutes=2)
    [(again, _)] = await store.automations.take_due(later, 10, "u", later + timedelta(1))
    with pytest.raises(ConfigError, match="process-automation job"):
        await store.automations.record_polls([_record(again, "u", ["a", "b"], 2)], later, None)
    assert [e.key for e in await store.automations.events(automation.id)] == ["a"]
