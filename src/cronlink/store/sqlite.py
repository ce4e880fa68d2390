"""The SQLite store: one file, WAL mode, one connection per process.

Writes run in `BEGIN IMMEDIATE` transactions so that a writer waits for the lock (up to the
busy timeout) instead of failing mid-transaction; several processes on one host can share
the file. Calls run on the event loop while the file is free (they take well under a
millisecond, less than a hop to a thread) and on the store's thread when another process
holds the lock, so the loop never waits for a lock: see `_call`.

`synchronous=NORMAL`: a crash of cronlink loses nothing committed; a power loss may roll
back the last commits (WAL stays consistent).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from cronlink.errors import CorruptDatabaseError, StoreError, UnstorableError
from cronlink.progress import Progress, silent
from cronlink.store import migrate, queries, rate_buckets, sqlite_hot, sqlite_refresh
from cronlink.store.audit_store import DETAIL_CHARS
from cronlink.store.base import Completion, Store
from cronlink.store.schema import refuse_unstorable

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta

    from cronlink.records.audit import AuditEntry
    from cronlink.records.connections import Sealed
    from cronlink.records.runs import NewRun, Run, Schedule, Tier
    from cronlink.store.base import (
        ClaimRequest,
        Done,
        SavedRefresh,
        ScheduleAdvance,
        Tick,
    )

T = TypeVar("T")
_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 10_000


class SQLiteStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://") or "cronlink.db")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cronlink-sqlite")
        self._conn: Connection | None = None
        self._db: sqlite3.Connection | None = None
        self._guard = threading.Lock()
        """One user of the connection at a time: the event loop (inline) or the thread."""

    async def open(self, *, migrate: bool = True, progress: Progress = silent) -> None:
        await self._call(lambda: self._open(migrate, progress))

    def _open(self, run_migrations: bool, progress: Progress) -> None:
        _refuse_foreign_file(self.path)
        engine = create_engine(
            f"sqlite:///{self.path}",
            poolclass=StaticPool,
            connect_args={"isolation_level": None, "check_same_thread": False},
        )
        event.listen(engine, "connect", _pragmas)
        event.listen(engine, "before_cursor_execute", refuse_unstorable)
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        migrate.refuse_foreign(conn, str(self.path))
        if run_migrations:
            with migrate.rebuildable(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    migrate.upgrade(conn, progress=progress)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
        else:
            migrate.check_not_newer(conn)
        self._conn = conn
        self._db = _raw(conn)
        self._db.execute("PRAGMA busy_timeout = 0")  # see `_call`

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._db = self._conn, None, None

            def shut() -> None:
                with self._guard:
                    conn.close()
                    conn.engine.dispose()

            await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- plumbing --------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T], *, inline: bool = True) -> T:
        """Run `fn` on the connection, on the store thread; or, for the small transactions
        of the hot path (`inline`), right here when the file is free.

        Inline saves the thread hop that costs more than such a transaction. It never waits
        for the file lock (the connection's busy timeout is 0 outside the store thread), so
        another process holding the lock cannot block the event loop: the call then goes
        to the store thread, which waits for the lock up to the busy timeout.
        """
        if inline and self._db is not None and self._guard.acquire(blocking=False):
            try:
                return _translated(fn, self.path)
            except StoreBusyError:
                pass
            finally:
                self._guard.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._waiting, fn)

    def _waiting(self, fn: Callable[[], T]) -> T:
        """On the store thread: run `fn`, waiting up to the busy timeout for the file."""
        with self._guard:
            db = self._db
            if db is not None:
                db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                return _translated(fn, self.path)
            finally:
                if db is not None and self._db is not None:
                    db.execute("PRAGMA busy_timeout = 0")

    def _write(self, fn: Callable[[Connection], T]) -> Callable[[], T]:
        return self._hot(lambda _db: fn(self._connection()))

    def _hot(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        """A write transaction on the raw connection (the hot verbs use it directly)."""

        def transaction() -> T:
            db = self._db
            if db is None:
                raise StoreError("the store is not open")
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return result

        return transaction

    def _raw_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    def _read(self, fn: Callable[[Connection], T]) -> Callable[[], T]:
        return lambda: fn(self._connection())

    def _connection(self) -> Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    # -- verbs -----------------------------------------------------------------------

    async def transact(self, fn: Callable[[Connection], T], *, write: bool) -> T:
        return await self._call(self._write(fn) if write else self._read(fn))

    async def take_refresh_lock(
        self, connection_id: int, token: str, until: datetime, now: datetime
    ) -> Sealed | None:
        return await self._call(
            self._hot(lambda db: sqlite_refresh.take(db, connection_id, token, until, now))
        )

    async def save_refresh(self, connection_id: int, saving: SavedRefresh) -> bool:
        return await self._call(
            self._hot(lambda db: sqlite_refresh.save(db, connection_id, saving))
        )

    async def sync_schedules(self, wanted: list[Schedule]) -> None:
        await self._call(self._write(lambda c: queries.sync_schedules(c, wanted)))

    async def record_ticks(
        self, ticks: list[Tick], advances: list[ScheduleAdvance], now: datetime
    ) -> dict[tuple[str, datetime], int]:
        return await self._call(
            self._hot(lambda db: sqlite_hot.record_ticks(db, ticks, advances, now))
        )

    async def subscribe(self, tier: Tier, wake: asyncio.Event) -> None:
        """SQLite has no notifications: workers in this process are woken directly by the
        scheduler and by `ctx.enqueue`; those of other processes poll."""

    async def enqueue_audited(
        self, run: NewRun, now: datetime, audit: Callable[[int, bool], AuditEntry]
    ) -> tuple[int, bool]:
        return await self._call(
            self._hot(lambda db: sqlite_hot.enqueue_audited(db, run, now, audit, DETAIL_CHARS))
        )

    async def take_tokens(
        self, key: str, want: int, interval: float, limit: float, now: float
    ) -> tuple[int, float]:
        # One statement: its own transaction, without BEGIN and COMMIT around it.
        return await self._call(
            lambda: rate_buckets.take_sqlite(self._raw_db(), key, want, interval, limit, now)
        )

    async def enqueue(self, run: NewRun, now: datetime) -> int:
        return await self._call(self._write(lambda c: queries.enqueue(c, run, now)), inline=True)

    async def claim(
        self, worker: str, tier: Tier, limit: int, lease: timedelta, now: datetime
    ) -> list[Run]:
        token = secrets.token_hex(8)

        def work(db: sqlite3.Connection) -> list[Run]:
            return sqlite_hot.claim(db, worker, token, tier, limit, now + lease, now)

        return await self._call(self._hot(work), inline=True)

    async def extend_leases(
        self, worker: str, run_ids: list[int], lease: timedelta, now: datetime
    ) -> set[int]:
        return await self._call(
            self._hot(lambda db: sqlite_hot.extend_leases(db, worker, run_ids, now + lease)),
            inline=True,
        )

    async def complete(
        self, done: list[Done], now: datetime, then_claim: ClaimRequest | None = None
    ) -> Completion:
        token = secrets.token_hex(8)

        def work(db: sqlite3.Connection) -> Completion:
            held = [sqlite_hot.complete(db, d.run_id, d.lease_token, d.outcome, now) for d in done]
            claimed = []
            if then_claim is not None:
                claimed = sqlite_hot.claim(
                    db,
                    then_claim.worker,
                    token,
                    then_claim.tier,
                    then_claim.limit,
                    now + then_claim.lease,
                    now,
                )
            return Completion(held=held, claimed=claimed)

        return await self._call(self._hot(work), inline=True)


def _raw(c: Connection) -> sqlite3.Connection:
    raw = c.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


class StoreBusyError(StoreError):
    """Another process held the database's write lock for too long."""


def _refuse_foreign_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        if handle.read(len(_MAGIC)) != _MAGIC:
            raise CorruptDatabaseError(
                f"{path} is not a SQLite database (corrupt, or another kind of file); "
                "it was left untouched"
            )


def _translated(fn: Callable[[], T], path: Path) -> T:
    """Run `fn`, turning sqlite3 errors into cronlink's: nothing above the store sees a driver."""
    try:
        return fn()
    except DBAPIError as error:
        raise _translate(error.orig, path) from error
    except sqlite3.Error as error:
        raise _translate(error, path) from error
    except UnicodeEncodeError as error:  # the raw hot verbs' own parameters
        raise UnstorableError(f"cannot store a value: {error.reason}") from None


def _translate(error: BaseException | None, path: Path) -> StoreError:
    text = str(error)
    if isinstance(error, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text
    ):
        return CorruptDatabaseError(f"{path} is corrupt ({text}); it was left untouched")
    if "locked" in text or "busy" in text:
        return StoreBusyError(
            f"{path} stayed locked by another process for over {BUSY_TIMEOUT_MS // 1000} s"
        )
    if "full" in text:
        return StoreError(f"storage full: cannot write {path} ({text})")
    return StoreError(f"database error on {path}: {text}")
