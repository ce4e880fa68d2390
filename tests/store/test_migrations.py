"""Alembic migrations produce exactly the schema the code declares, on both engines."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, delete, func, insert, select, text

from cronlink.errors import CorruptDatabaseError
from cronlink.records.runs import NewRun, Reason, Tier
from cronlink.store import RunFilter, migrate, schema, store_for
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


def test_the_revisions_read_as_text_are_alembics() -> None:
    scripts = ScriptDirectory(str(Path(migrate.__file__).with_name("migrations")))
    assert migrate.revisions() == {s.revision: s.down_revision for s in scripts.walk_revisions()}
    assert migrate.head_revision() == scripts.get_current_head()


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


# -- ids never given twice -------------------------------------------------------------

_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_CONNECTION = {
    "provider": "sandbox", "owner": "alice", "state": "active", "health": "unknown",
    "scopes": "[]", "secrets": "x", "key_id": "k", "version": 1, "refresh_failures": 0,
    "health_failures": 0, "health_successes": 0, "created_at": _NOW, "updated_at": _NOW,
}  # fmt: skip
_AUTOMATION = {
    "connection_id": 1, "params": "{}", "steps": "[]", "interval_s": 60, "offset_s": 0,
    "concurrency": 1, "state": "active", "cursor": "{}", "poll_failures": 0, "stalled": False,
    "created_at": _NOW, "updated_at": _NOW,
}  # fmt: skip
_QUEUED = {
    "job": "j", "tier": "light", "reason": "enqueue", "state": "queued", "enqueued_at": _NOW,
    "not_before": _NOW, "overlap": "allow",
}  # fmt: skip
_EVENT = {
    "automation_id": 1, "state": "done", "data": "{}", "seen_at": _NOW, "step": 0,
    "outputs": "[]",
}  # fmt: skip


def at_0013_with_deleted_rows(url: str) -> dict[str, list[str]]:
    """A database at 0013 whose newest rows of each kind were deleted, though other rows
    still name them: connection 3 (its events, a queued refresh), automation 4 and event 2
    (a queued run); and the SQLite indexes it has."""
    engine = create_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(conn, "0013")
        for _ in range(3):
            conn.execute(insert(schema.connections).values(_CONNECTION))
        conn.execute(delete(schema.connections).where(schema.connections.c.id == 3))
        conn.execute(insert(schema.connection_events).values(
            connection_id=3, at=_NOW, kind="deleted", detail="gone"))  # fmt: skip
        for n in range(4):
            conn.execute(insert(schema.automations).values({**_AUTOMATION, "name": f"a{n}"}))
        for key in "ab":
            conn.execute(insert(schema.automation_events).values({**_EVENT, "key": key}))
        conn.execute(delete(schema.automations).where(schema.automations.c.id > 2))
        conn.execute(delete(schema.automation_events).where(schema.automation_events.c.id == 2))
        for payload in ('{"connection_id": 3}', '{"automation_id": 4, "event_id": 2}', "oops"):
            conn.execute(insert(schema.runs).values({**_QUEUED, "payload": payload}))
        indexes = _indexes(conn)
    engine.dispose()
    return indexes


def _indexes(conn: Connection) -> dict[str, list[str]]:
    if conn.dialect.name != "sqlite":
        return {}
    rows = conn.exec_driver_sql(
        "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
    )
    found: dict[str, list[str]] = {}
    for table, sql in rows:
        found.setdefault(table, []).append(sql)
    return found


async def test_upgrade_gives_no_id_again_that_rows_still_name(any_url: str) -> None:
    url = any_url.replace("postgresql://", "postgresql+psycopg://", 1)
    indexes = at_0013_with_deleted_rows(url)
    store = store_for(any_url)
    await store.open()
    await store.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        after = _indexes(conn)  # later revisions add indexes of their own
        kept = {table: [i for i in after[table] if i in sqls] for table, sqls in indexes.items()}
        assert kept == indexes
        assert conn.execute(select(func.count()).select_from(schema.runs)).scalar() == 3
        made = {
            table.name: conn.execute(
                insert(table).values(values).returning(table.c.id)
            ).scalar_one()
            for table, values in [
                (schema.connections, _CONNECTION),
                (schema.automations, {**_AUTOMATION, "name": "a9"}),
                (schema.automation_events, {**_EVENT, "key": "c"}),
            ]
        }
    engine.dispose()
    assert made == {"connections": 4, "automations": 5, "automation_events": 3}
