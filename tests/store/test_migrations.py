"""Alembic migrations produce exactly the schema the code declares, on both engines."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text

from cronlink.errors import CorruptDatabaseError
from cronlink.records import NewRun, Reason, Tier
from cronlink.store import RunFilter, migrate, store_for
from cronlink.store.schema import metadata
from tests.postgres import fresh_schema


def check(engine: Engine) -> None:
    with engine.begin() as conn:
        migrate.upgrade(conn)
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert migrate.current_revision(conn) == migrate.head_revision()
        migrate.upgrade(conn)  # a second upgrade is a no-op
    engine.dispose()


def test_migrations_match_the_declared_schema_on_sqlite(tmp_path: Path) -> None:
    check(create_engine(f"sqlite:///{tmp_path / 'm.db'}"))


def test_migrations_match_the_declared_schema_on_postgres() -> None:
    with fresh_schema() as url:
        check(create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)))


# -- upgrading a database that holds runs ----------------------------------------------

_RUN = """INSERT INTO runs (job, tier, reason, state, enqueued_at, not_before, attempt,
    max_attempts, overlap, cancel_requested, dedupe_key)
VALUES ('sync', 'light', 'api', 'succeeded', 0, 0, 1, 1, 'allow', false, :key)"""
_FIRE = """INSERT INTO fires (job, scheduled_for, fate, run_id, recorded_at)
VALUES ('sync', :at, 'run', :run, 0)"""
_LOG = """INSERT INTO run_logs (run_id, attempt, at, level, message)
VALUES (:run, 1, 0, 'INFO', 'kept')"""


def at_0010_with_runs(url: str, *, orphan: bool = False) -> None:
    """A database at revision 0010 (dedupe keys as a unique constraint) holding three runs,
    one with a dedupe key, each with a ledger entry and a log line; with `orphan`, also a
    log line whose run does not exist."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(conn, "0010")
        for run_id, key in ((1, None), (2, "refresh:7:1"), (3, None)):
            conn.execute(text(_RUN), {"key": key})  # ids 1, 2, 3: fresh tables
            conn.execute(text(_FIRE), {"at": run_id, "run": run_id})
            conn.execute(text(_LOG), {"run": run_id})
        if orphan:
            conn.execute(text("PRAGMA foreign_keys = OFF"))  # SQLite only: it checks later
            conn.execute(text(_LOG), {"run": 99})
    engine.dispose()


async def upgraded_keeps_runs_and_their_keys(url: str) -> None:
    store = store_for(url)
    await store.open()
    try:
        assert [r.id for r in await store.list_runs(RunFilter(limit=10))] == [3, 2, 1]
        assert [f.run_id for f in await store.ledger("sync", None, 10)] == [3, 2, 1]
        assert [line[3] for line in await store.run_logs(2)] == ["kept"]
        now = datetime.now(UTC)
        again = NewRun(job="sync", tier=Tier.LIGHT, reason=Reason.API, dedupe_key="refresh:7:1")
        assert await store.enqueue(again, now) == 2  # the key still starts one run
        fresh = NewRun(job="sync", tier=Tier.LIGHT, reason=Reason.API)
        keyless = [await store.enqueue(fresh, now) for _ in "ab"]
        assert len(set(keyless)) == 2  # runs without a key never clash
        assert min(keyless) > 3
    finally:
        await store.close()


async def test_upgrade_rebuilds_sqlite_runs_keeping_rows_and_references(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    at_0010_with_runs(f"sqlite:///{path}")
    await upgraded_keeps_runs_and_their_keys(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "ux_runs_dedupe_key" in names
        assert not any(name.startswith("sqlite_autoindex_runs") for name in names)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_upgrade_on_postgres_keeps_runs_and_their_keys() -> None:
    with fresh_schema() as url:
        at_0010_with_runs(url.replace("postgresql://", "postgresql+psycopg://", 1))
        await upgraded_keeps_runs_and_their_keys(url)


async def test_upgrade_refuses_broken_references_and_leaves_sqlite_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    at_0010_with_runs(f"sqlite:///{path}", orphan=True)
    store = store_for(f"sqlite:///{path}")
    broken = r"missing rows: 1 \(the first: run_logs row 4, to runs\); the upgrade was rolled back"
    with pytest.raises(CorruptDatabaseError, match=broken):
        await store.open()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0010",)]
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (3,)
