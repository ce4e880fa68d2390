"""Shared rate-limit buckets: exact under calls from several processes at once, kept
across restarts, forgiving of a clock set back."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

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
