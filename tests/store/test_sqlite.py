"""Properties of the SQLite engine itself (the contract suite covers the shared verbs)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from cronlink.records.runs import NewRun, Reason, RunState, Tier
from cronlink.store import Store

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def test_a_locked_database_waits_without_blocking_the_loop(
    sqlite_store: Store, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "cronlink.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    run = NewRun(job="j", tier=Tier.LIGHT, reason=Reason.MANUAL)
    pending = asyncio.ensure_future(sqlite_store.enqueue(run, T0))
    began = time.monotonic()
    await asyncio.sleep(0.2)
    assert time.monotonic() - began < 0.5  # the event loop kept running
    assert not pending.done()
    other.execute("COMMIT")
    other.close()
    run_id = await asyncio.wait_for(pending, 10)
    assert (await sqlite_store.get_run(run_id)).state is RunState.QUEUED


async def test_wal_mode_and_durability_settings(sqlite_store: Store, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "cronlink.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
