"""The PostgreSQL store: psycopg 3 through SQLAlchemy's asyncio engine, any number of processes.

The verbs shared with SQLite are `Store`'s, over `transact`; this engine adds its connections,
LISTEN/NOTIFY and its hot paths: firing, claiming and completing use set-based SQL with
`FOR UPDATE SKIP LOCKED` (`postgres_hot.py`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cronlink.errors import StoreError, UnstorableError, first_line
from cronlink.progress import Progress, silent
from cronlink.scrubbing import without_password
from cronlink.store import (
    migrate,
    postgres_enqueue,
    postgres_hot,
    postgres_refresh,
    queries,
    rate_buckets,
)
from cronlink.store.audit_store import DETAIL_CHARS
from cronlink.store.base import ClaimRequest, Completion, Store
from cronlink.store.postgres_enqueue import channel
from cronlink.store.schema import refuse_unstorable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime, timedelta

    from psycopg import AsyncConnection
    from sqlalchemy import Connection

    from cronlink.records.audit import AuditEntry
    from cronlink.records.connections import Sealed
    from cronlink.records.runs import NewRun, Run, Schedule, Tier
    from cronlink.store.base import (
        Done,
        SavedRefresh,
        ScheduleAdvance,
        Tick,
    )

T = TypeVar("T")
log = logging.getLogger("cronlink.store")


class PostgresStore(Store):
    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.url = without_password(url)
        _, rest = url.split("://", 1)
        self._engine_url = f"postgresql+psycopg://{rest}"
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._dsn = url
        self._listeners: list[asyncio.Task[None]] = []
        self._pool: AsyncConnectionPool | None = None

    async def open(self, *, migrate: bool = True, progress: Progress = silent) -> None:
        self._engine = create_async_engine(
            self._engine_url, pool_size=self._pool_size, max_overflow=5, pool_pre_ping=True
        )
        event.listen(self._engine.sync_engine, "before_cursor_execute", refuse_unstorable)
        await self._run(lambda c: _prepare(c, migrate, progress), write=True)
        # No check on checkout (a round trip per transaction): a connection the server
        # dropped fails its transaction once, the caller retries, the pool replaces it.
        self._pool = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=_generic_plans,
            open=False,
        )
        await self._pool.open()

    async def subscribe(self, tier: Tier, wake: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(tier, wake), name=f"listen-{tier.value}")
        self._listeners.append(listener)

    async def _listen(self, tier: Tier, wake: asyncio.Event) -> None:
        """LISTEN on the tier's channel on a connection of its own; reconnect with backoff."""
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {channel(tier)}")
                    delay = 0.5
                    wake.set()  # anything queued while we were not listening
                    async for _ in conn.notifies():
                        wake.set()
            except psycopg.Error as error:
                log.warning(
                    "listening for %s work failed (%s); retrying in %gs",
                    tier.value,
                    first_line(error),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        for listener in self._listeners:
            listener.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        self._listeners.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def _run(self, fn: Callable[[Connection], T], *, write: bool = False) -> T:
        if self._engine is None:
            raise StoreError("the store is not open")
        try:
            if write:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(fn)
            async with self._engine.connect() as conn:
                return await conn.run_sync(fn)
        except DBAPIError as error:
            raise StoreError(f"database error on {self.url}: {first_line(error.orig)}") from None
        except OSError as error:
            raise StoreError(f"cannot reach {self.url}: {error}") from None

    async def transact(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        return await self._run(fn, write=write)

    async def take_refresh_lock(
        self, connection_id: int, token: str, until: datetime, now: datetime
    ) -> Sealed | None:
        async def work(db: AsyncConnection[Any]) -> Sealed | None:
            return await postgres_refresh.take(db, connection_id, token, until, now)

        return await self._hot(work)

    async def save_refresh(self, connection_id: int, saving: SavedRefresh) -> bool:
        async def work(db: AsyncConnection[Any]) -> bool:
            return await postgres_refresh.save(db, connection_id, saving)

        return await self._hot(work)

    async def sync_schedules(self, wanted: list[Schedule]) -> None:
        await self._run(lambda c: postgres_hot.sync_schedules(c, wanted), write=True)

    async def record_ticks(
        self, ticks: list[Tick], advances: list[ScheduleAdvance], now: datetime
    ) -> dict[tuple[str, datetime], int]:
        async def work(db: AsyncConnection[Any]) -> dict[tuple[str, datetime], int]:
            return await postgres_hot.record_ticks(db, ticks, advances, now)

        return await self._hot(work)

    async def enqueue(self, run: NewRun, now: datetime) -> int:
        def work(c: Connection) -> int:
            run_id, _ = queries.enqueue_once(c, run, now)
            postgres_enqueue.notify(c, {run.tier})
            return run_id

        return await self._run(work, write=True)

    async def claim(
        self, worker: str, tier: Tier, limit: int, lease: timedelta, now: datetime
    ) -> list[Run]:
        request = ClaimRequest(worker=worker, tier=tier, limit=limit, lease=lease)
        completion = await self.complete([], now, request)
        return completion.claimed

    async def extend_leases(
        self, worker: str, run_ids: list[int], lease: timedelta, now: datetime
    ) -> set[int]:
        async def work(db: AsyncConnection[Any]) -> set[int]:
            return await postgres_hot.extend_leases(db, worker, run_ids, now + lease)

        return await self._hot(work)

    async def complete(
        self, done: list[Done], now: datetime, then_claim: ClaimRequest | None = None
    ) -> Completion:
        token = secrets.token_hex(8)

        async def work(db: AsyncConnection[Any]) -> Completion:
            return await postgres_hot.complete_and_claim(db, done, now, then_claim, token)

        return await self._hot(work)

    async def enqueue_audited(
        self, run: NewRun, now: datetime, audit: Callable[[int, bool], AuditEntry]
    ) -> tuple[int, bool]:
        return await self._hot(
            lambda db: postgres_enqueue.enqueue_audited(db, run, now, audit, DETAIL_CHARS)
        )

    async def take_tokens(
        self, key: str, want: int, interval: float, limit: float, now: float
    ) -> tuple[int, float]:
        return await self._hot(
            lambda db: rate_buckets.take_postgres(db, key, want, interval, limit, now)
        )

    async def _hot(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """A pooled psycopg connection, autocommit: the verbs run for every run and are one
        statement each, and SQLAlchemy's asyncio layer cost more than the statements
        (bench/queue_bench.py)."""
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.connection() as db:
                return await fn(db)
        except (psycopg.DataError, UnicodeEncodeError) as error:
            # Refused by the driver before it sent anything, or by the server inside the
            # verb's own transaction: the connection goes back to the pool clean either way.
            raise UnstorableError(f"cannot store a value: {first_line(error)}") from None
        except psycopg.Error as error:
            raise StoreError(f"database error on {self.url}: {first_line(error)}") from None
        except OSError as error:
            raise StoreError(f"cannot reach {self.url}: {error}") from None


async def _generic_plans(db: AsyncConnection[Any]) -> None:
    """Plan the hot statements once per connection. psycopg prepares them, and once the
    tables have statistics PostgreSQL would otherwise plan a claim afresh at every use
    (a custom plan, for `:limit` is known then), about 0.5 ms of the server's time each.
    Their generic plans probe by primary key whatever the parameters (`postgres_hot.py`)."""
    await db.execute("SET plan_cache_mode = force_generic_plan")


def _prepare(c: Connection, run_migrations: bool, progress: Progress) -> None:
    migrate.refuse_foreign(c, "the database")
    if run_migrations:
        migrate.upgrade(c, progress=progress)
    else:
        migrate.check_not_newer(c)
