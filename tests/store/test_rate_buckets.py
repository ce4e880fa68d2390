"""Shared rate-limit buckets: exact under calls from several processes at once, kept
across restarts, forgiving of a clock set back; taken a batch at a time, so that calls
cost few statements and a fleet admits at most a batch per process beyond the burst."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import Connection, text

from cronlink.store import Store, store_for
from cronlink.web.limits import Limiter
from tests.postgres import fresh_schema

T = 1_800_000_000.0  # seconds since the epoch


async def test_two_stores_at_once_take_exactly_the_burst(store: Store) -> None:
    other = store_for(store.url)
    await other.open()
    try:
        limits = [Limiter(rate=0.001, burst=25, store=s, name="address") for s in (store, other)]
        waits = await asyncio.gather(*(limits[n % 2].wait("203.0.113.9", now=T) for n in range(60)))
        assert sum(w == 0.0 for w in waits) == 25
        assert all(w > 0 for w in waits if w)
        again = Limiter(rate=0.001, burst=25, store=other, name="address")  # a restart
        assert await again.wait("203.0.113.9", now=T + 1) > 0
        assert await again.wait("203.0.113.9", now=T + 1000) == 0.0  # refilled one
        assert await again.wait("203.0.113.10", now=T + 1000) == 0.0  # keys do not share
        login = Limiter(rate=0.001, burst=1, store=other, name="login")
        assert await login.wait("203.0.113.9", now=T + 1000) == 0.0  # nor do limits
    finally:
        await other.close()


async def test_a_clock_set_back_costs_one_interval_not_the_jump(store: Store) -> None:
    limit = Limiter(rate=1.0, burst=2, store=store, name="credential")
    assert [await limit.wait("k", now=T) for _ in range(3)] == [0.0, 0.0, 1.0]
    fresh = Limiter(rate=1.0, burst=2, store=store, name="credential")  # no local copy
    assert await fresh.wait("k", now=T - 3600) == 1.0
    assert await fresh.wait("k", now=T - 3599) == 0.0


async def test_full_buckets_are_forgotten(store: Store) -> None:
    limit = Limiter(rate=1.0, burst=5, store=store, name="address")
    for n in range(3):
        await limit.wait(f"198.51.100.{n}", now=T + n)
    assert await store.forget_buckets(T + 1.5) == 1
    assert await store.forget_buckets(T + 100) == 2


async def test_a_batch_costs_one_statement_and_a_flood_none(store: Store) -> None:
    await count_bucket_writes(store)
    limit = Limiter(rate=0.001, burst=80, store=store, name="address")
    assert limit.batch == 10
    assert [await limit.wait("k", now=T) for _ in range(40)] == [0.0] * 40
    assert await bucket_writes(store) == 4
    # At once, the calls of one process wait for its batch instead of each asking.
    waits = await asyncio.gather(*(limit.wait("k", now=T) for _ in range(140)))
    assert sum(w == 0.0 for w in waits) == 40
    assert await bucket_writes(store) == 8  # the flood over the rate cost none
    assert await Limiter(rate=0.001, burst=80, store=store, name="address").wait("k", now=T) > 0
    assert await bucket_writes(store) == 9  # a restart holds nothing: it asks, and is refused


async def test_a_fleet_admits_the_rate_give_or_take_a_batch_per_process(store: Store) -> None:
    """Three processes, calls at random instants: in no window do they admit more than the
    burst, what the rate adds in the window, and `batch - 1` per process; nor much less
    than the rate over the whole run."""
    others = [store_for(store.url) for _ in range(2)]
    for other in others:
        await other.open()
    try:
        rate, burst = 10.0, 40
        fleet = [Limiter(rate, burst, s, "address") for s in (store, *others)]
        draw = random.Random(7)
        now, admitted = T, []
        for _ in range(600):
            now += draw.expovariate(3 * rate)  # three times the rate, in bursts and lulls
            if await draw.choice(fleet).wait("k", now=now) == 0.0:
                admitted.append(now)
        slack = len(fleet) * (fleet[0].batch - 1)
        for first, start in enumerate(admitted):
            for last in range(first, len(admitted)):
                allowed = burst + (admitted[last] - start) * rate + slack
                assert last - first + 1 <= allowed
        assert len(admitted) >= burst + (now - T) * rate * 0.9  # and the rest is not lost
    finally:
        for other in others:
            await other.close()


async def test_tokens_held_are_all_a_fleet_admits_beyond_the_burst(store: Store) -> None:
    """The worst case: a process takes a batch (5) from a half-full bucket, spends one and
    holds 4 until just before the bucket would be full again; then another drains what the
    bucket has (39) while the first spends what it holds: 43 at one instant, where the
    burst is 40. A process holds less than a batch, and nothing once the bucket is full."""
    other = store_for(store.url)
    await other.open()
    try:
        holder, drainer = (
            Limiter(rate=10.0, burst=40, store=s, name="address") for s in (store, other)
        )
        assert [await drainer.wait("k", now=T) for _ in range(20)] == [0.0] * 20
        assert await holder.wait("k", now=T) == 0.0  # the bucket is full again at T + 2.5
        now = T + 2.46
        at_once = [await drainer.wait("k", now=now) == 0.0 for _ in range(50)]
        at_once += [await holder.wait("k", now=now) == 0.0 for _ in range(10)]
        assert sum(at_once) == 39 + holder.batch - 1 == 43
    finally:
        await other.close()


async def test_tokens_held_lapse_once_the_bucket_is_full_again(store: Store) -> None:
    """Each process took a batch and spent one; once the bucket is full again, a flood
    through all of them gets the burst exactly, not the burst and what they held."""
    other = store_for(store.url)
    await other.open()
    try:
        fleet = [Limiter(rate=1.0, burst=40, store=s, name="address") for s in (store, other)]
        assert [await limit.wait("k", now=T) for limit in fleet] == [0.0, 0.0]
        waits = [await fleet[n % 2].wait("k", now=T + 3600) for n in range(60)]
        assert sum(w == 0.0 for w in waits) == 40
    finally:
        await other.close()


async def count_bucket_writes(store: Store) -> None:
    """Count, in the database itself, the statements that take tokens: each writes its
    bucket's row once (insert or update), whichever connection and driver it comes by."""
    engine = "sqlite" if store.url.startswith("sqlite") else "postgresql"

    def install(c: Connection) -> None:
        for statement in _COUNTER[engine]:
            c.execute(text(statement))

    await store.transact(install, write=True)


async def bucket_writes(store: Store) -> int:
    return int(await store.transact(lambda c: c.execute(text(_WRITES)).scalar_one(), write=False))


_WRITES = "SELECT n FROM bucket_writes"
_COUNTER = {
    "sqlite": [
        "CREATE TABLE bucket_writes (n INTEGER NOT NULL)",
        "INSERT INTO bucket_writes VALUES (0)",
        "CREATE TRIGGER insert_counted AFTER INSERT ON rate_buckets "
        "BEGIN UPDATE bucket_writes SET n = n + 1; END",
        "CREATE TRIGGER update_counted AFTER UPDATE ON rate_buckets "
        "BEGIN UPDATE bucket_writes SET n = n + 1; END",
    ],
    "postgresql": [
        "CREATE TABLE bucket_writes (n INTEGER NOT NULL)",
        "INSERT INTO bucket_writes VALUES (0)",
        "CREATE FUNCTION count_bucket_write() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE bucket_writes SET n = n + 1; RETURN NULL; END $$",
        "CREATE TRIGGER counted AFTER INSERT OR UPDATE ON rate_buckets "
        "FOR EACH ROW EXECUTE FUNCTION count_bucket_write()",
    ],
}


async def test_buckets_skip_the_write_ahead_log_on_postgres() -> None:
    """Every checked call updates a bucket: on PostgreSQL, not worth a WAL flush each."""
    with fresh_schema() as url:
        store = store_for(url)
        await store.open()
        try:
            persistence = await store.transact(
                lambda c: c.execute(text(_PERSISTENCE)).scalar(), write=False
            )
        finally:
            await store.close()
    assert persistence == "u"


_PERSISTENCE = "SELECT relpersistence FROM pg_class WHERE oid = 'rate_buckets'::regclass"
