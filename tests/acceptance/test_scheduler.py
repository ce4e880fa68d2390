"""The scheduler against a real SQLite file, with time passed in (never slept)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronlink.engine.scheduler import Scheduler
from cronlink.errors import StoreError
from cronlink.jobs import build_job
from cronlink.records.runs import Fate, RunState, Tier
from cronlink.store import RunFilter, Store, store_for

T0 = datetime(2025, 1, 6, 12, 0, 0, tzinfo=UTC)


def scheduler(store: Store, cron: str, **options: object) -> Scheduler:
    job = build_job(name="j", schedules=[cron], **options)  # type: ignore[arg-type]
    return Scheduler(store, {"j": job})


async def runs(store: Store) -> list[datetime]:
    found = await store.list_runs(RunFilter(job="j", limit=100_000))
    return sorted(r.scheduled_for for r in found if r.scheduled_for)


async def test_fires_each_instant_once(any_store: Store) -> None:
    s = scheduler(any_store, "*/5 * * * *", overlap="allow")
    await s.sync(T0)
    assert (await s.tick(T0 + timedelta(minutes=4))).started == 0
    assert (await s.tick(T0 + timedelta(minutes=5, seconds=0.5))).started == 1
    assert (await s.tick(T0 + timedelta(minutes=5, seconds=1))).started == 0
    assert (await s.tick(T0 + timedelta(minutes=10))).started == 1
    assert await runs(any_store) == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]


async def test_restart_after_three_days_runs_latest_once(any_store: Store) -> None:
    s = scheduler(any_store, "* * * * *")
    await s.sync(T0)
    report = await s.tick(T0 + timedelta(days=3))
    assert report.started == 1
    assert report.missed == 3 * 24 * 60 - 1
    assert await runs(any_store) == [T0 + timedelta(days=3)]
    ledger = await any_store.ledger("j", T0, 10_000)
    assert len(ledger) == 3 * 24 * 60
    assert {f.fate for f in ledger} == {Fate.RUN, Fate.MISSED}


async def test_misfire_all_within_grace(any_store: Store) -> None:
    s = scheduler(any_store, "*/10 * * * *", misfire="all", misfire_grace="1h", overlap="allow")
    await s.sync(T0)
    report = await s.tick(T0 + timedelta(hours=3))
    assert report.started == 7  # 14:00 .. 15:00 inclusive
    assert report.missed == 11
    assert (await runs(any_store))[0] == T0 + timedelta(hours=2)


async def test_misfire_skip_runs_nothing_late(any_store: Store) -> None:
    s = scheduler(any_store, "0 * * * *", misfire="skip")
    await s.sync(T0)
    assert (await s.tick(T0 + timedelta(hours=3, minutes=5))).started == 0
    assert (await s.tick(T0 + timedelta(hours=4, seconds=2))).started == 1


async def test_clock_jumping_back_creates_no_runs(any_store: Store) -> None:
    s = scheduler(any_store, "* * * * *", overlap="allow")
    await s.sync(T0)
    await s.tick(T0 + timedelta(minutes=10))
    assert (await s.tick(T0 + timedelta(minutes=5))).started == 0
    assert (await s.tick(T0 + timedelta(minutes=10, seconds=30))).started == 0
    assert (await s.tick(T0 + timedelta(minutes=11))).started == 1


async def test_overlap_skip_records_the_skipped_instant(any_store: Store) -> None:
    s = scheduler(any_store, "* * * * *")
    await s.sync(T0)
    await s.tick(T0 + timedelta(minutes=1))
    lease = timedelta(minutes=10)
    assert len(await any_store.claim("w", Tier.LIGHT, 5, lease, T0 + timedelta(minutes=1))) == 1
    await s.tick(T0 + timedelta(minutes=2))
    assert await any_store.claim("w", Tier.LIGHT, 5, lease, T0 + timedelta(minutes=2)) == []
    fates = [f.fate for f in reversed(await any_store.ledger("j", None, 10))]
    assert fates == [Fate.RUN, Fate.SKIPPED_OVERLAP]


async def test_lookahead_fires_early_but_runs_wait_for_their_instant(any_store: Store) -> None:
    s = scheduler(any_store, "* * * * *")
    await s.sync(T0)
    assert (await s.tick(T0 + timedelta(seconds=59.5))).started == 1
    lease = timedelta(minutes=1)
    assert await any_store.claim("w", Tier.LIGHT, 5, lease, T0 + timedelta(seconds=59.9)) == []
    [run] = await any_store.claim("w", Tier.LIGHT, 5, lease, T0 + timedelta(minutes=1))
    assert run.scheduled_for == T0 + timedelta(minutes=1)


async def test_paused_job_records_skipped_paused(any_store: Store) -> None:
    s = scheduler(any_store, "* * * * *")
    await s.sync(T0)
    await any_store.set_paused("j", True, T0)
    await s.tick(T0 + timedelta(minutes=1))
    [fire] = await any_store.ledger("j", None, 10)
    assert fire.fate is Fate.SKIPPED_PAUSED
    assert fire.run_id is None


async def test_spring_forward_fixed_time_job_runs_once(any_store: Store) -> None:
    s = scheduler(any_store, "30 2 * * *", timezone="America/New_York", overlap="allow")
    start = datetime(2025, 3, 9, 0, 0, tzinfo=ZoneInfo("America/New_York"))
    await s.sync(start)
    for minute in range(0, 6 * 60):
        await s.tick(start + timedelta(minutes=minute, seconds=1))
    [only] = await runs(any_store)
    assert only.astimezone(ZoneInfo("America/New_York")).isoformat() == "2025-03-09T03:00:00-04:00"


async def test_jitter_delays_not_before_but_keeps_the_ledger_key(any_store: Store) -> None:
    s = scheduler(any_store, "0 * * * *", jitter="10m")
    await s.sync(T0)
    await s.tick(T0 + timedelta(hours=1))
    [run] = await any_store.list_runs(RunFilter(job="j"))
    assert run.scheduled_for == T0 + timedelta(hours=1)
    assert T0 + timedelta(hours=1) <= run.not_before < T0 + timedelta(hours=1, minutes=10)
    assert run.state is RunState.QUEUED


RACER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime, timedelta, UTC
    from cronlink.jobs import build_job
    from cronlink.engine.scheduler import Scheduler
    from cronlink.store import store_for

    async def main() -> None:
        store = store_for(sys.argv[1])
        await store.open()
        jobs = {f"j{i}": build_job(name=f"j{i}", schedules=["* * * * * *"], overlap="allow")
                for i in range(5)}
        s = Scheduler(store, jobs)
        t0 = datetime(2025, 1, 1, tzinfo=UTC)
        await s.sync(t0)
        for step in range(1, 201):
            await s.tick(t0 + timedelta(seconds=step))
        await store.close()

    asyncio.run(main())
    """
)


async def test_two_scheduler_processes_fire_each_instant_once(any_url: str) -> None:
    url = any_url
    store = store_for(url)
    await store.open()
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", RACER, url) for _ in range(2)
    ]
    codes = [await p.wait() for p in procs]
    assert codes == [0, 0]
    found = await store.list_runs(RunFilter(limit=10_000))
    keys = [(r.job, r.scheduled_for) for r in found]
    # 200 ticks of 1 s each, firing half a second ahead: instants 1..200.
    assert len(keys) == len(set(keys)) == 5 * 200
    ledger = await store.ledger(None, None, 10_000)
    assert len(ledger) == 5 * 200
    await store.close()


async def test_the_scheduler_outlives_a_store_that_cannot_answer(sqlite_store: Store) -> None:
    """While the database restarts, every call fails for a moment; `run` must go on."""
    failures = 2
    real_next_wakeup = sqlite_store.next_wakeup

    async def flaky() -> datetime | None:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreError("cannot reach the database (injected)")
        return await real_next_wakeup()

    sqlite_store.next_wakeup = flaky  # type: ignore[method-assign]
    s = scheduler(sqlite_store, "* * * * * *", overlap="allow")  # every second
    stop = asyncio.Event()
    role = asyncio.create_task(s.run(stop))
    async with asyncio.timeout(10):
        while failures or not await runs(sqlite_store):
            assert not role.done(), role
            await asyncio.sleep(0.05)
    stop.set()
    await role
    assert failures == 0
