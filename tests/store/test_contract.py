"""The store contract: every engine must pass these unchanged."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronlink.errors import CorruptDatabaseError, RunNotFoundError, SchemaTooNewError
from cronlink.records.audit import AuditEntry
from cronlink.records.runs import (
    Fate,
    NewRun,
    Overlap,
    Reason,
    RunError,
    RunState,
    Schedule,
    Spend,
    Tier,
)
from cronlink.store import (
    ClaimRequest,
    Done,
    Outcome,
    RunFilter,
    ScheduleAdvance,
    Store,
    Tick,
    store_for,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def tick(job: str, at: datetime, missed: bool = False, overlap: str = "skip") -> Tick:
    run = NewRun(
        job=job,
        tier=Tier.LIGHT,
        reason=Reason.SCHEDULE,
        scheduled_for=at,
        not_before=at,
        overlap=Overlap(overlap),
    )
    return Tick(run=run, missed=missed)


def new_run(job: str = "j", **kw: object) -> NewRun:
    return NewRun(job=job, tier=Tier.LIGHT, reason=Reason.MANUAL, **kw)  # type: ignore[arg-type]


async def test_a_tick_is_recorded_once(store: Store) -> None:
    first = await store.record_ticks([tick("j", T0)], [], T0)
    again = await store.record_ticks([tick("j", T0)], [], T0)
    assert list(first) == [("j", T0)]
    assert again == {}
    ledger = await store.ledger("j", None, 10)
    assert [(f.fate, f.run_id) for f in ledger] == [(Fate.RUN, first[("j", T0)])]
    assert len(await store.list_runs(RunFilter(job="j"))) == 1


async def test_fates_missed_and_paused_at_fire_time(store: Store) -> None:
    await store.set_paused("p", True, T0)
    started = await store.record_ticks(
        [tick("m", T0, missed=True), tick("p", T0), tick("o", T0)], [], T0
    )
    fates = {(f.job, f.scheduled_for): f.fate for f in await store.ledger(None, None, 10)}
    assert fates == {("m", T0): Fate.MISSED, ("p", T0): Fate.SKIPPED_PAUSED, ("o", T0): Fate.RUN}
    assert list(started) == [("o", T0)]
    await store.set_paused("p", False, T0)
    assert await store.paused_jobs() == set()


async def test_overlap_skip_is_decided_when_the_run_is_due(store: Store) -> None:
    later = T0 + timedelta(minutes=1)
    await store.record_ticks([tick("o", T0), tick("o", later)], [], T0)
    [first] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0)
    # Still running at the next instant: that instant gives way and is recorded skipped.
    assert await store.claim("w", Tier.LIGHT, 10, LEASE, later) == []
    fates = {f.scheduled_for: f.fate for f in await store.ledger("o", None, 10)}
    assert fates == {T0: Fate.RUN, later: Fate.SKIPPED_OVERLAP}
    [skipped] = await store.list_runs(RunFilter(job="o", state=RunState.CANCELLED))
    assert skipped.error is not None
    assert skipped.error.reason == "overlap"
    assert f"run {first.id}" in skipped.error.message


async def test_overlap_skip_runs_when_the_previous_run_ended_in_time(store: Store) -> None:
    later = T0 + timedelta(minutes=1)
    await store.record_ticks([tick("o", T0), tick("o", later)], [], T0)
    [first] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0)
    assert await finish(store, first.id, first.lease_token or "", done())
    [second] = await store.claim("w", Tier.LIGHT, 10, LEASE, later)
    assert second.scheduled_for == later


async def test_two_due_instants_of_a_skip_job_in_one_claim(store: Store) -> None:
    await store.record_ticks([tick("o", T0), tick("o", T0 + timedelta(seconds=1))], [], T0)
    claimed = await store.claim("w", Tier.LIGHT, 10, LEASE, T0 + timedelta(seconds=5))
    assert [r.scheduled_for for r in claimed] == [T0]


async def test_overlap_queue_and_replace(store: Store) -> None:
    await store.record_ticks([tick("q", T0, overlap="queue")], [], T0)
    await store.record_ticks([tick("q", T0 + timedelta(minutes=1), overlap="queue")], [], T0)
    assert len(await store.list_runs(RunFilter(job="q", state=RunState.QUEUED))) == 2
    [running] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0 + timedelta(minutes=2))
    assert running.scheduled_for == T0
    await store.record_ticks([tick("q", T0 + timedelta(minutes=2), overlap="replace")], [], T0)
    [replacing] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0 + timedelta(minutes=2))
    assert replacing.scheduled_for == T0 + timedelta(minutes=2)
    assert (await store.get_run(running.id)).cancel_requested
    # The queued `queue` run still waits for the running one.
    [waiting] = await store.list_runs(RunFilter(job="q", state=RunState.QUEUED))
    assert waiting.scheduled_for == T0 + timedelta(minutes=1)


async def test_manual_runs_ignore_overlap_skip(store: Store) -> None:
    await store.record_ticks([tick("o", T0)], [], T0)
    await store.claim("w", Tier.LIGHT, 10, LEASE, T0)
    await store.enqueue(new_run("o", overlap=Overlap.SKIP), T0)
    assert len(await store.claim("w", Tier.LIGHT, 10, LEASE, T0)) == 1


async def test_an_external_scheduler_naming_its_instant_gets_the_overlap_policy(
    store: Store,
) -> None:
    """`POST /cron/{job}` with a schedule-time header stands for that instant: a `skip`
    job's call gives way to its running run, a `replace` job's call takes over."""
    await store.record_ticks([tick("o", T0)], [], T0)
    [running] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0)
    later = T0 + timedelta(minutes=1)
    called = NewRun(job="o", tier=Tier.LIGHT, reason=Reason.API, scheduled_for=later,
                    overlap=Overlap.SKIP)  # fmt: skip
    skipped_id = await store.enqueue(called, later)
    assert await store.claim("w", Tier.LIGHT, 10, LEASE, later) == []
    skipped = await store.get_run(skipped_id)
    assert skipped.state is RunState.CANCELLED
    assert skipped.error is not None
    assert skipped.error.reason == "overlap"
    again = later + timedelta(minutes=1)
    replacing = NewRun(job="o", tier=Tier.LIGHT, reason=Reason.API, scheduled_for=again,
                       overlap=Overlap.REPLACE)  # fmt: skip
    await store.enqueue(replacing, later)
    [took_over] = await store.claim("w", Tier.LIGHT, 10, LEASE, later)
    assert took_over.reason is Reason.API
    assert (await store.get_run(running.id)).cancel_requested


async def test_serial_runs_never_overlap(store: Store) -> None:
    for _ in range(3):
        await store.enqueue(new_run("s", overlap=Overlap.QUEUE), T0)
    claimed = await store.claim("w", Tier.LIGHT, 10, LEASE, T0)
    assert len(claimed) == 1
    assert await store.claim("w", Tier.LIGHT, 10, LEASE, T0) == []
    ok = await finish(store, claimed[0].id, claimed[0].lease_token or "", done())
    assert ok
    assert len(await store.claim("w", Tier.LIGHT, 10, LEASE, T0)) == 1


async def finish(store: Store, run_id: int, token: str, outcome: Outcome) -> bool:
    completion = await store.complete([Done(run_id=run_id, lease_token=token, outcome=outcome)], T0)
    [held] = completion.held
    return held


def done(**kw: object) -> Outcome:
    return Outcome(state=RunState.SUCCEEDED, **kw)  # type: ignore[arg-type]


async def test_claim_respects_tier_and_not_before(store: Store) -> None:
    later = await store.enqueue(new_run(not_before=T0 + timedelta(seconds=10)), T0)
    heavy = await store.enqueue(NewRun(job="h", tier=Tier.HEAVY, reason=Reason.API), T0)
    assert await store.claim("w", Tier.LIGHT, 10, LEASE, T0) == []
    [run] = await store.claim("w", Tier.LIGHT, 10, LEASE, T0 + timedelta(seconds=10))
    assert run.id == later
    assert run.state is RunState.RUNNING
    assert run.attempt == 1
    assert run.worker == "w"
    assert run.lease_expires_at == T0 + timedelta(seconds=10) + LEASE
    [h] = await store.claim("w", Tier.HEAVY, 10, LEASE, T0)
    assert h.id == heavy


async def test_complete_needs_the_lease(store: Store) -> None:
    await store.enqueue(new_run(), T0)
    [run] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    assert not await finish(store, run.id, "stolen", done())
    error = RunError(type="ValueError", message="bad", traceback="tb", reason="exception")
    outcome = Outcome(
        state=RunState.FAILED,
        error=error,
        duration_ms=5,
        logs=((T0, "info", "hello"),),
    )
    assert await finish(store, run.id, run.lease_token or "", outcome)
    stored = await store.get_run(run.id)
    assert stored.state is RunState.FAILED
    assert stored.error == error
    assert stored.finished_at == T0
    assert await store.run_logs(run.id) == [(T0, 1, "info", "hello")]
    assert not await finish(store, run.id, run.lease_token or "", done())


async def test_retry_requeues_with_not_before(store: Store) -> None:
    await store.enqueue(new_run(max_attempts=3), T0)
    [run] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    retry = Outcome(state=RunState.FAILED, retry_at=T0 + timedelta(seconds=5))
    assert await finish(store, run.id, run.lease_token or "", retry)
    assert await store.claim("w", Tier.LIGHT, 1, LEASE, T0) == []
    [again] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0 + timedelta(seconds=5))
    assert again.attempt == 2


async def test_expired_leases_are_reaped(store: Store) -> None:
    await store.enqueue(new_run("a", max_attempts=2), T0)
    await store.enqueue(new_run("b", max_attempts=1), T0)
    claimed = await store.claim("w", Tier.LIGHT, 2, LEASE, T0)
    assert len(claimed) == 2
    assert await store.reap_expired(T0 + LEASE) == []
    reaped = {r.job: r for r in await store.reap_expired(T0 + LEASE + timedelta(seconds=1))}
    assert reaped["a"].state is RunState.QUEUED
    assert reaped["b"].state is RunState.DEAD
    assert reaped["b"].error is not None
    assert reaped["b"].error.reason == "lease_expired"
    # The old owner cannot complete any more.
    for run in claimed:
        assert not await finish(store, run.id, run.lease_token or "", done())


async def test_heartbeat_extends_and_reports_cancels(store: Store) -> None:
    await store.enqueue(new_run("a"), T0)
    await store.enqueue(new_run("b"), T0)
    a, b = await store.claim("w", Tier.LIGHT, 2, LEASE, T0)
    later = T0 + timedelta(seconds=20)
    assert await store.extend_leases("w", [a.id, b.id], LEASE, later) == set()
    assert await store.reap_expired(T0 + LEASE + timedelta(seconds=1)) == []
    cancelled = await store.request_cancel(b.id, later)
    assert cancelled.cancel_requested
    assert await store.extend_leases("w", [a.id, b.id], LEASE, later) == {b.id}
    assert await store.extend_leases("other", [a.id], LEASE, later) == {a.id}


async def test_cancel_queued_run(store: Store) -> None:
    run_id = await store.enqueue(new_run(), T0)
    assert (await store.request_cancel(run_id, T0)).state is RunState.CANCELLED
    with pytest.raises(RunNotFoundError):
        await store.get_run(run_id + 100)


async def test_dedupe_key_returns_the_same_run(store: Store) -> None:
    first = await store.enqueue(new_run(dedupe_key="k1"), T0)
    assert await store.enqueue(new_run(dedupe_key="k1"), T0) == first
    assert await store.enqueue(new_run(dedupe_key="k2"), T0) != first


async def test_schedules_sync_and_advance(store: Store) -> None:
    a = Schedule(key="a", job="a", cron="* * * * *", timezone="UTC", cursor=T0, next_at=T0)
    b = Schedule(key="b", job="b", cron="0 * * * *", timezone="UTC", cursor=T0, next_at=T0)
    await store.sync_schedules([a, b])
    moved = ScheduleAdvance(
        key="a", cursor=T0 + timedelta(minutes=5), next_at=T0 + timedelta(minutes=6)
    )
    await store.record_ticks([], [moved], T0)
    # Syncing again keeps the cursor of a schedule that stays; drops one that went.
    await store.sync_schedules([a])
    [kept] = await store.due_schedules(T0 + timedelta(hours=1), 10)
    assert kept.cursor == T0 + timedelta(minutes=5)
    # A cursor never moves backwards (a slower scheduler racing a faster one).
    await store.record_ticks([], [ScheduleAdvance(key="a", cursor=T0, next_at=T0)], T0)
    assert await store.next_wakeup() == T0 + timedelta(minutes=6)


async def test_more_schedules_than_a_statement_has_parameters(store: Store) -> None:
    many = [
        Schedule(key=f"s{i}", job=f"s{i}", cron="* * * * *", timezone="UTC", cursor=T0,
                 next_at=T0 + timedelta(minutes=1))
        for i in range(70_000)
    ]  # fmt: skip
    await store.sync_schedules(many)
    await store.sync_schedules(many[1:])
    due = await store.due_schedules(T0 + timedelta(minutes=1), 100_000)
    assert len(due) == 69_999
    assert "s0" not in {s.key for s in due}


async def test_run_payload_and_idempotency_key(store: Store) -> None:
    run_id = await store.enqueue(new_run(payload={"n": 1}), T0)
    run = await store.get_run(run_id)
    assert run.payload == {"n": 1}
    assert run.idempotency_key == f"j#{run_id}"
    started = await store.record_ticks([tick("t", T0)], [], T0)
    scheduled = await store.get_run(started[("t", T0)])
    assert scheduled.idempotency_key == "t@2025-01-01T12:00:00+00:00"


async def test_last_runs(store: Store) -> None:
    await store.enqueue(new_run("a"), T0)
    newest = await store.enqueue(new_run("a"), T0)
    assert (await store.last_runs(["a", "b"]))["a"].id == newest


async def test_corrupt_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cronlink.db"
    path.write_bytes(b"not a database at all" * 100)
    before = path.read_bytes()
    store = store_for(f"sqlite:///{path}")
    with pytest.raises(CorruptDatabaseError, match="not a SQLite database"):
        await store.open()
    await store.close()
    assert path.read_bytes() == before


async def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cronlink.db"
    store = store_for(f"sqlite:///{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    before = path.read_bytes()
    store = store_for(f"sqlite:///{path}")
    with pytest.raises(SchemaTooNewError, match="'9999'"):
        await store.open()
    await store.close()
    assert path.read_bytes() == before


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    store = store_for(f"sqlite:///{path}")
    with pytest.raises(CorruptDatabaseError, match="another application"):
        await store.open()
    await store.close()


async def test_complete_claims_the_next_runs_in_the_same_transaction(store: Store) -> None:
    for _ in range(3):
        await store.enqueue(new_run(), T0)
    a, b = await store.claim("w", Tier.LIGHT, 2, LEASE, T0)
    completion = await store.complete(
        [
            Done(run_id=a.id, lease_token=a.lease_token or "", outcome=done()),
            Done(run_id=b.id, lease_token="lost", outcome=done()),
        ],
        T0,
        ClaimRequest(worker="w", tier=Tier.LIGHT, limit=2, lease=LEASE),
    )
    assert completion.held == [True, False]
    [following] = completion.claimed
    assert following.state is RunState.RUNNING
    assert following.id not in (a.id, b.id)


async def test_scheduled_run_ids_follow_their_instants(store: Store) -> None:
    instants = [T0 + timedelta(seconds=i) for i in range(6)]
    started = await store.record_ticks([tick("ordered", at) for at in instants], [], T0)
    assert [started[("ordered", at)] for at in instants] == sorted(started.values())


async def test_a_stale_and_a_fresh_completion_of_one_run_in_one_batch(store: Store) -> None:
    run_id = await store.enqueue(new_run(max_attempts=3), T0)
    [stale] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    await store.reap_expired(T0 + LEASE + timedelta(seconds=1))
    [fresh] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0 + LEASE + timedelta(seconds=2))
    assert (stale.id, fresh.id, fresh.attempt) == (run_id, run_id, 2)
    at = T0 + LEASE + timedelta(seconds=3)
    completion = await store.complete(
        [
            Done(run_id=run_id, lease_token=stale.lease_token or "",
                 outcome=done(logs=((at, "info", "from attempt 1"),))),
            Done(run_id=run_id, lease_token=fresh.lease_token or "",
                 outcome=done(logs=((at, "info", "from attempt 2"),))),
        ],
        at,
    )  # fmt: skip
    assert completion.held == [False, True]
    assert [(a, m) for _, a, _, m in await store.run_logs(run_id)] == [(2, "from attempt 2")]


async def test_a_retry_due_now_is_claimed_in_the_turn_that_queued_it(store: Store) -> None:
    await store.enqueue(new_run(max_attempts=3), T0)
    [first] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    request = ClaimRequest(worker="w", tier=Tier.LIGHT, limit=1, lease=LEASE)
    failed = Outcome(state=RunState.FAILED, retry_at=T0)
    completion = await store.complete(
        [Done(run_id=first.id, lease_token=first.lease_token or "", outcome=failed)], T0, request
    )
    assert [(r.id, r.attempt) for r in completion.claimed] == [(first.id, 2)]


async def test_an_audited_enqueue_writes_the_run_and_its_line_together(store: Store) -> None:
    def line(run_id: int, deduplicated: bool) -> AuditEntry:
        outcome = "deduplicated" if deduplicated else "accepted"
        return AuditEntry(
            at=T0, actor="cron-secret", action="cron.run", target="j", client="127.0.0.1",
            outcome=outcome, detail=f"run {run_id}",
        )  # fmt: skip

    first = await store.audit.enqueue(new_run(dedupe_key="k"), T0, line)
    again = await store.audit.enqueue(new_run(dedupe_key="k"), T0, line)
    assert again == (first[0], True)
    assert first[1] is False
    lines = await store.audit.find(limit=10)
    assert [(e.outcome, e.detail) for e in lines] == [
        ("deduplicated", f"run {first[0]}"), ("accepted", f"run {first[0]}"),
    ]  # fmt: skip

    def broken(run_id: int, deduplicated: bool) -> AuditEntry:
        raise RuntimeError("no line")

    with pytest.raises(RuntimeError):
        await store.audit.enqueue(new_run(dedupe_key="other"), T0, broken)
    assert [r.id for r in await store.list_runs(RunFilter(job="j"))] == [first[0]]


async def test_what_a_run_spends_adds_up_over_its_attempts(store: Store) -> None:
    run_id = await store.enqueue(new_run(max_attempts=3), T0)
    [first] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    spent = Spend(requests=2, cpu_ms=150, memory_mib_s=12.5)
    retry = Outcome(state=RunState.FAILED, retry_at=T0, spend=spent)
    assert await finish(store, run_id, first.lease_token or "", retry)
    assert (await store.get_run(run_id)).requests == 2
    [second] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    done = Outcome(state=RunState.SUCCEEDED, spend=Spend(requests=1, cpu_ms=50, memory_mib_s=2.5))
    assert await finish(store, run_id, second.lease_token or "", done)
    run = await store.get_run(run_id)
    assert (run.requests, run.cpu_ms, run.memory_mib_s) == (3, 200, 15.0)
    # A light run measures no CPU: its total stays unknown, never a false zero.
    other = await store.enqueue(new_run(), T0)
    [light] = await store.claim("w", Tier.LIGHT, 1, LEASE, T0)
    assert await finish(store, other, light.lease_token or "", Outcome(state=RunState.SUCCEEDED))
    assert (await store.get_run(other)).cpu_ms is None


async def test_usage_by_day_and_tier_and_job_profiles(store: Store) -> None:
    yesterday, today = T0 - timedelta(days=1), T0
    for at, job, tier in [(yesterday, "a", Tier.LIGHT), (today, "a", Tier.LIGHT),
                          (today, "h", Tier.HEAVY), (today, "h", Tier.HEAVY)]:  # fmt: skip
        await store.enqueue(NewRun(job=job, tier=tier, reason=Reason.MANUAL), at)
    for tier, ms in [(Tier.LIGHT, 10), (Tier.LIGHT, 20), (Tier.HEAVY, 1000), (Tier.HEAVY, 3000)]:
        [run] = await store.claim("w", tier, 1, LEASE, T0)
        spent = (
            Spend(requests=1, cpu_ms=ms // 2, memory_mib_s=ms / 10)
            if tier is Tier.HEAVY
            else (Spend(requests=3))
        )
        outcome = Outcome(state=RunState.SUCCEEDED, duration_ms=ms, peak_memory=ms, spend=spent)
        assert await finish(store, run.id, run.lease_token or "", outcome)
    days = await store.usage_days(yesterday)
    assert [(d.day.isoformat(), d.tier, d.runs, d.invocations, d.requests) for d in days] == [
        ("2024-12-31", Tier.LIGHT, 1, 1, 3),
        ("2025-01-01", Tier.HEAVY, 2, 2, 2),
        ("2025-01-01", Tier.LIGHT, 1, 1, 3),
    ]
    heavy = days[1]
    assert (heavy.run_seconds, heavy.cpu_seconds) == (4.0, 2.0)
    assert heavy.memory_gib_s == pytest.approx(400 / 1024)
    profiles = {p.job: p for p in await store.job_profiles(today)}
    assert (profiles["h"].runs, profiles["h"].p95_ms, profiles["h"].peak_memory) == (2, 3000, 3000)
    assert (profiles["a"].runs, profiles["a"].tier) == (1, Tier.LIGHT)
