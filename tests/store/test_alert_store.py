"""`store.alerts` on both engines: each start, recovery and message decided once, the
rate-limit window shared, the facts the rules read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from cronlink.records.alerts import AlertState, Finding, Owed
from cronlink.records.automations import Cursor
from cronlink.records.connections import ConnectionState, Health, HealthCheck
from cronlink.records.runs import NewRun, Reason, RunError, RunState, Tier
from cronlink.store import Done, Outcome, Store, store_for
from tests.store.test_contract import tick

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def finding(key: str, body: str = "figures") -> Finding:
    return Finding(key=key, rule=key.split(":")[0], subject=f"{key} subject", body=body)


async def test_an_alert_starts_once_updates_its_figures_and_recovers_once(
    any_store: Store,
) -> None:
    alerts = any_store.alerts
    assert await alerts.reconcile([finding("job-failing:a")], T0) == (["job-failing:a"], [])
    assert await alerts.reconcile([finding("job-failing:a", "newer")], T0) == ([], [])
    [firing] = await alerts.list()
    assert (firing.state, firing.body, firing.since, firing.owed) == (
        AlertState.FIRING, "newer", T0, Owed.FIRING
    )  # fmt: skip
    later = T0 + timedelta(minutes=3)
    assert await alerts.reconcile([], later) == ([], ["job-failing:a"])
    assert await alerts.reconcile([], later) == ([], [])
    assert await alerts.list() == []
    [resolved] = await alerts.list(None)
    assert (resolved.state, resolved.resolved_at) == (AlertState.RESOLVED, later)
    # It never went out, so there is nothing to take back: no message is owed.
    assert resolved.owed is None


async def test_a_sent_alert_owes_its_recovery_and_then_nothing(any_store: Store) -> None:
    alerts = any_store.alerts
    await alerts.reconcile([finding("run-dead:a")], T0)
    [claimed] = await alerts.claim("me", T0 + LEASE, T0, 10)
    assert claimed.owed is Owed.FIRING
    await alerts.settle("run-dead:a", "me", Owed.FIRING, T0)
    assert await alerts.claim("me", T0 + LEASE, T0, 10) == []
    await alerts.reconcile([], T0 + timedelta(minutes=1))
    [recovery] = await alerts.claim("me", T0 + LEASE, T0, 10)
    assert recovery.owed is Owed.RECOVERED
    await alerts.settle("run-dead:a", "me", Owed.RECOVERED, T0)
    # Firing again starts a new episode, owing a new message.
    again = T0 + timedelta(minutes=2)
    assert await alerts.reconcile([finding("run-dead:a")], again) == (["run-dead:a"], [])
    [refired] = await alerts.claim("me", T0 + LEASE, again, 10)
    assert (refired.owed, refired.since, refired.resolved_at) == (Owed.FIRING, again, None)


async def test_a_flip_while_its_message_is_being_sent_owes_the_other(any_store: Store) -> None:
    alerts = any_store.alerts
    await alerts.reconcile([finding("job-slow:a")], T0)
    await alerts.claim("sender", T0 + LEASE, T0, 10)
    await alerts.reconcile([], T0)  # recovered while its firing message is on its way
    await alerts.settle("job-slow:a", "sender", Owed.FIRING, T0)
    [owing] = await alerts.claim("next", T0 + LEASE, T0, 10)
    assert owing.owed is Owed.RECOVERED


async def test_a_claimed_message_is_nobody_elses_until_its_lease_lapses(any_store: Store) -> None:
    alerts = any_store.alerts
    await alerts.reconcile([finding("x:1"), finding("x:2")], T0)
    assert [a.key for a in await alerts.claim("one", T0 + LEASE, T0, 10)] == ["x:1", "x:2"]
    assert await alerts.claim("two", T0 + LEASE, T0, 10) == []
    lapsed = T0 + LEASE + timedelta(seconds=1)
    assert len(await alerts.claim("two", lapsed + LEASE, lapsed, 1)) == 1


async def test_concurrent_evaluators_start_and_claim_each_alert_once(any_url: str) -> None:
    stores = [store_for(any_url) for _ in range(2)]
    for opened in stores:
        await opened.open()
    try:
        found = [finding(f"job-failing:{i}") for i in range(30)]
        outcomes = await asyncio.gather(*(s.alerts.reconcile(found, T0) for s in stores))
        started = [key for first, _ in outcomes for key in first]
        assert sorted(started) == sorted(f.key for f in found)
        claims = await asyncio.gather(
            *(s.alerts.claim(f"t{i}", T0 + LEASE, T0, 100) for i, s in enumerate(stores))
        )
        claimed = [a.key for batch in claims for a in batch]
        assert sorted(claimed) == sorted(f.key for f in found)
        slots = await asyncio.gather(*(s.alerts.take_slots(T0, 8, 10) for s in stores))
        assert sorted(slots) == [2, 8]
    finally:
        for opened in stores:
            await opened.close()


async def test_the_window_caps_the_messages_and_the_next_one_starts_afresh(
    any_store: Store,
) -> None:
    alerts = any_store.alerts
    assert await alerts.take_slots(T0, 3, 5) == 3
    assert await alerts.take_slots(T0, 3, 5) == 2
    assert await alerts.take_slots(T0, 1, 5) == 0
    assert await alerts.take_slots(T0 + timedelta(hours=1), 4, 5) == 4


async def _end(store: Store, job: str, state: RunState, at: datetime, **kw: object) -> int:
    run_id = await store.enqueue(NewRun(job=job, tier=Tier.LIGHT, reason=Reason.MANUAL,
                                        max_attempts=3), at)  # fmt: skip
    [run] = await store.claim("w", Tier.LIGHT, 1, LEASE, at)
    assert run.id == run_id
    outcome = Outcome(state=state, **kw)  # type: ignore[arg-type]
    done = Done(run_id=run.id, lease_token=run.lease_token or "", outcome=outcome)
    await store.complete([done], at)
    return run_id


async def test_facts_are_the_newest_runs_and_the_unhealthy_things(any_store: Store) -> None:
    await any_store.record_ticks([tick("a", T0)], [], T0)
    await any_store.claim("w", Tier.LIGHT, 10, LEASE, T0)  # the ticked run, left running
    ok = await _end(any_store, "a", RunState.SUCCEEDED, T0, duration_ms=120)
    dead = await _end(any_store, "a", RunState.DEAD, T0 + timedelta(minutes=1), error=RunError(
        type="Boom", message="secret stuff", reason="exception"))  # fmt: skip
    await _end(any_store, "a", RunState.CANCELLED, T0 + timedelta(minutes=2))
    connections = any_store.connections
    ids = [
        (await connections.add(provider="sandbox", owner=f"u{i}", scopes="", now=T0,
                               seal=lambda _: ("sealed", "k1"), expires_at=None,
                               refresh_due_at=None)).id
        for i in range(3)
    ]  # fmt: skip
    await connections.set_state(ids[0], ConnectionState.NEEDS_REAUTH, "invalid_grant", T0)
    await connections.record_health(
        [HealthCheck(connection_id=ids[1], health=Health.DOWN, failures=3, successes=0,
                     latency_ms=None, event="healthy -> down")], T0)  # fmt: skip
    await any_store.automations.add(
        {"name": "watch", "connection_id": ids[2], "trigger": "new_item", "params": {},
         "steps": [], "schedule": None, "interval_s": 60, "offset_s": 0, "concurrency": 1,
         "cursor": Cursor(), "next_poll_at": T0}, T0)  # fmt: skip
    await any_store.automations.mark_stalled(T0 + timedelta(hours=1), T0, T0 + timedelta(hours=2))

    facts = await any_store.alerts.facts(["a", "b"], recent=10)

    a = facts.jobs["a"]
    assert [(r.id, r.state) for r in a.recent] == [(dead, "dead"), (ok, "succeeded")]
    assert (a.recent[0].error_type, a.recent[0].error_reason) == ("Boom", "exception")
    assert (a.last_success, a.first_fire, a.recent[1].duration_ms) == (T0, T0, 120)
    assert facts.jobs["b"].recent == ()
    assert facts.jobs["b"].last_success is None
    assert [(c.id, c.state, c.health) for c in facts.connections] == [
        (ids[0], "needs_reauth", "unknown"), (ids[1], "active", "down")
    ]  # fmt: skip
    assert [t.name for t in facts.triggers] == ["watch"]
