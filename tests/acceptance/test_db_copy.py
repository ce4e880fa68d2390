"""`cronlink db copy`: every row, ids kept, one target transaction; real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

from cronlink.cli import cli
from cronlink.records.ai_calls import AiCall
from cronlink.records.alerts import Finding
from cronlink.records.api_tokens import Scope
from cronlink.records.audit import AuditEntry
from cronlink.records.automations import Cursor
from cronlink.records.runs import NewRun, Overlap, Reason, RunError, RunState, Schedule, Tier
from cronlink.store import Done, Outcome, RunFilter, ScheduleAdvance, Tick, store_for
from cronlink.store.copy import copy_database
from cronlink.store.migrate import head_revision
from cronlink.store.schema import metadata
from tests.postgres import fresh_schema

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
EVERYTHING = 1_000_000


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["db", "copy", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def scheduled(job: str, at: datetime, *, missed: bool = False) -> Tick:
    run = NewRun(job=job, tier=Tier.LIGHT, reason=Reason.SCHEDULE, scheduled_for=at)
    return Tick(run=run, missed=missed)


async def populate(url: str, extra_runs: int = 30) -> None:
    """A database with something in every column a cronlink in service fills."""
    store = store_for(url)
    await store.open()
    try:
        await store.sync_schedules(
            [
                Schedule(key="a:0", job="a", cron="* * * * *", timezone="UTC", cursor=T0,
                         next_at=T0 + timedelta(minutes=1)),
                Schedule(key="b:0", job="b", cron="30 2 * * *", timezone="Europe/Paris",
                         cursor=T0, next_at=None),
            ]
        )  # fmt: skip
        await store.set_paused("p", True, T0)
        await store.connections.add(
            provider="sandbox", owner="alice", scopes="profile", now=T0,
            seal=lambda cid: (f"sealed-secrets-of-{cid}", "key-id"),
            expires_at=T0 + timedelta(hours=1), refresh_due_at=T0 + timedelta(minutes=50),
        )  # fmt: skip
        await store.set_paused("a", False, T0)
        automation = await store.automations.add(
            {"name": "inbox", "connection_id": 1, "trigger": "new_email", "params": {"q": "é"},
             "steps": [{"name": "s", "call": "m:f"}], "schedule": None, "interval_s": 60,
             "offset_s": 17, "concurrency": 1, "cursor": Cursor(watermark="2026-01-01T00:00:00Z"),
             "next_poll_at": T0},
            T0,
        )  # fmt: skip
        await store.automations.add_event(
            automation, "k1", {"id": 1}, None,
            NewRun(job="process-automation", tier=Tier.HEAVY, reason=Reason.ENQUEUE),
            T0,
        )  # fmt: skip
        await store.audit.append(
            AuditEntry(at=T0, actor="cron-secret", action="cron.run", target="a",
                       client="10.0.0.7", outcome="accepted", detail="run 1 – é")
        )  # fmt: skip
        await store.tokens.create("ci", Scope.OPERATE, "d" * 64, T0 + timedelta(days=90), T0)
        await store.signatures.spend("e" * 64, T0, T0 + timedelta(minutes=5))
        await store.ai.record(AiCall(
            model="fast", at=T0, job="a", run_id=1, attempt=1, input_tokens=120,
            output_tokens=30, cost_usd=0.25, requests=2, answered=True,
        ))  # fmt: skip
        await store.overrides.replace("p", [("0 9 * * *", "Europe/Paris")], [], T0)
        await store.heartbeats.beat("scheduler", T0)
        await store.alerts.reconcile(
            [Finding(key="job-failing:d", rule="job-failing", subject="é", body="figures")], T0
        )
        await store.alerts.take_slots(T0, 1, 20)
        minute = timedelta(minutes=1)
        await store.record_ticks(
            [scheduled("a", T0), scheduled("a", T0 - minute, missed=True), scheduled("p", T0)],
            [ScheduleAdvance(key="a:0", cursor=T0, next_at=T0 + minute)],
            T0,
        )
        await store.enqueue(
            NewRun(job="m", tier=Tier.LIGHT, reason=Reason.MANUAL, payload={"n": [1, "é"]},
                   max_attempts=3, overlap=Overlap.QUEUE, dedupe_key="m-1"),
            T0,
        )  # fmt: skip
        for _ in range(2):
            await store.enqueue(NewRun(job="d", tier=Tier.LIGHT, reason=Reason.MANUAL), T0)
        heavy = await store.enqueue(NewRun(job="h", tier=Tier.HEAVY, reason=Reason.API), T0)
        await store.request_cancel(heavy, T0)
        for n in range(extra_runs):
            later = T0 + timedelta(hours=1, seconds=n)
            await store.enqueue(
                NewRun(job=f"x{n % 3}", tier=Tier.LIGHT, reason=Reason.ENQUEUE, not_before=later),
                T0,
            )
        # The fourth stays running, its lease held: the copy carries leases as they are.
        ok, failing, retried, _ = await store.claim("w-1", Tier.LIGHT, 4, LEASE, T0)
        end = T0 + timedelta(seconds=2)
        error = RunError(type="ValueError", message="bad", traceback="Traceback …", reason="x")
        outcomes = {
            ok.id: Outcome(state=RunState.SUCCEEDED, result='{"ok": true}', duration_ms=2000,
                           peak_memory=1 << 20,
                           logs=((T0, "info", "one"), (end, "warning", "two"))),
            failing.id: Outcome(state=RunState.FAILED, error=error, logs=((end, "error", "bad"),)),
            retried.id: Outcome(state=RunState.FAILED, retry_at=end + timedelta(seconds=30),
                                logs=((end, "info", "again"),)),
        }  # fmt: skip
        claimed = {r.id: r for r in (ok, failing, retried)}
        await store.complete(
            [Done(run_id=i, lease_token=claimed[i].lease_token or "", outcome=o)
             for i, o in outcomes.items()],
            end,
        )  # fmt: skip
    finally:
        await store.close()


async def snapshot(url: str) -> dict[str, Any]:
    """Everything the store shows: runs (every field), ledger, schedules, pauses, logs."""
    store = store_for(url)
    await store.open()
    try:
        runs = await store.list_runs(RunFilter(limit=EVERYTHING))
        return {
            "runs": runs,
            "fires": await store.ledger(None, None, EVERYTHING),
            "schedules": await store.due_schedules(T0 + timedelta(days=9999), EVERYTHING),
            "paused": await store.paused_jobs(),
            "logs": {run.id: await store.run_logs(run.id) for run in runs},
        }
    finally:
        await store.close()


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, straight from the database (jobs' updated_at, next_at None …)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as c:
            return {
                t.name: sorted((tuple(row) for row in c.execute(select(t))), key=repr)
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()


async def enqueue_one(url: str) -> int:
    store = store_for(url)
    await store.open()
    try:
        return await store.enqueue(NewRun(job="new", tier=Tier.LIGHT, reason=Reason.MANUAL), T0)
    finally:
        await store.close()


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password (trust authentication ignores it), and that password."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    user, host = parts.netloc.split("@", 1)
    return urlunsplit(parts._replace(netloc=f"{user}:s3cr3t-pw@{host}")), "s3cr3t-pw"


# -- tests -------------------------------------------------------------------------------


async def test_sqlite_to_postgres_keeps_every_row(tmp_path: Path, postgres_url: str) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source)
    code, out = invoke("--from", source, "--to", postgres_url, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["rows"] == {
        "connection_events": 1, "connections": 1, "jobs": 2, "runs": 36, "schedules": 2,
        "automations": 1, "automation_events": 1, "audit_log": 1, "api_tokens": 1,
        "spent_signatures": 1, "schedule_overrides": 1, "heartbeats": 1, "fires": 3,
        "run_logs": 4, "alerts": 1, "alert_windows": 1, "rate_buckets": 0, "ai_calls": 1,
        "ai_months": 1,
    }  # fmt: skip
    assert report["replaced"] == 0
    assert "stop every cronlink role" in report["warning"]
    expected = await snapshot(source)
    assert await snapshot(postgres_url) == expected
    assert expected["paused"] == {"p"}
    assert any(r.state is RunState.RUNNING and r.lease_token for r in expected["runs"])
    assert table_rows(postgres_url) == table_rows(source)


async def test_ids_continue_after_the_copied_ones(tmp_path: Path, postgres_url: str) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source)
    assert invoke("--from", source, "--to", postgres_url)[0] == 0
    newest = max(r.id for r in (await snapshot(source))["runs"])
    assert await enqueue_one(postgres_url) == newest + 1
    # run_logs' sequence too: a completion with a log line inserts one.
    store = store_for(postgres_url)
    await store.open()
    try:
        claimed = await store.claim("w-2", Tier.LIGHT, 100, LEASE, T0 + timedelta(days=1))
        outcome = Outcome(state=RunState.SUCCEEDED, logs=((T0, "info", "after the move"),))
        done = [
            Done(run_id=r.id, lease_token=r.lease_token or "", outcome=outcome) for r in claimed
        ]
        assert (await store.complete(done, T0)).held == [True] * len(claimed)
        assert (await store.run_logs(newest + 1))[-1][3] == "after the move"
    finally:
        await store.close()


async def test_a_target_with_rows_is_refused_and_untouched(
    tmp_path: Path, postgres_url: str
) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source)
    await populate(postgres_url, extra_runs=2)
    before = table_rows(postgres_url)
    target, password = with_password(postgres_url)
    code, out = invoke("--from", source, "--to", target)
    assert code == 1
    assert "error: target postgresql://" in out
    assert ":***@" in out
    assert password not in out
    held = (
        "ai_calls 1, ai_months 1, alert_windows 1, alerts 1, api_tokens 1, audit_log 1, "
        "automation_events 1, "
        "automations 1, connection_events 1, connections 1, heartbeats 1, jobs 2, runs 8, "
        "schedule_overrides 1, schedules 2, spent_signatures 1, fires 3, run_logs 4"
    )
    assert f"already holds 32 cronlink rows ({held})" in out
    assert "--force replaces them" in out
    assert table_rows(postgres_url) == before


async def test_force_replaces_the_target_rows(tmp_path: Path, postgres_url: str) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source, extra_runs=3)
    await populate(postgres_url, extra_runs=40)
    code, out = invoke("--from", source, "--to", postgres_url, "--force")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("note: stop every cronlink role that uses the source")
    assert [line.split() for line in lines[1:20]] == [
        ["ai_calls", "1"], ["ai_months", "1"], ["alert_windows", "1"], ["alerts", "1"],
        ["api_tokens", "1"], ["audit_log", "1"],
        ["automation_events", "1"], ["automations", "1"], ["connection_events", "1"],
        ["connections", "1"],
        ["heartbeats", "1"], ["jobs", "2"], ["rate_buckets", "0"], ["runs", "9"],
        ["schedule_overrides", "1"], ["schedules", "2"], ["spent_signatures", "1"],
        ["fires", "3"], ["run_logs", "4"],
    ]  # fmt: skip
    assert lines[20] == "replaced the 70 rows the target held"
    assert lines[21].startswith(f"copied 33 rows from {source} to postgresql://")
    assert table_rows(postgres_url) == table_rows(source)
    assert await enqueue_one(postgres_url) == 47  # the replaced rows' ids stay spent


@pytest.mark.parametrize("target_kind", ["postgres", "sqlite", "new sqlite file"])
async def test_a_failure_mid_copy_leaves_the_target_as_it_was(
    tmp_path: Path, target_kind: str
) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source)
    # A log line of a run that does not exist: SQLite does not check foreign keys unless
    # asked, so such a row can be there; both targets refuse it, after the tables before it.
    with sqlite3.connect(tmp_path / "cronlink.db") as db:
        db.execute(
            "INSERT INTO run_logs (run_id, attempt, at, level, message) "
            "VALUES (999999, 1, 0, 'info', 'orphan')"
        )
    with fresh_schema() as postgres:
        target = postgres if target_kind == "postgres" else sqlite_url(tmp_path, "target.db")
        if target_kind != "new sqlite file":
            await populate(target, extra_runs=5)
        before = table_rows(target) if target_kind != "new sqlite file" else None
        code, out = invoke("--from", source, "--to", target, "--force")
        assert code == 1
        assert f"error: copying {source} to " in out
        assert "the target was left as it was" in out
        if before is None:
            assert not (tmp_path / "target.db").exists()
            return
        assert table_rows(target) == before
        assert await enqueue_one(target) == 12


async def test_postgres_to_sqlite_round_trip(tmp_path: Path, postgres_url: str) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    back = sqlite_url(tmp_path, "back.db")
    await populate(source)
    # Batches of 4: every table spans several reads and inserts (COPY on PostgreSQL).
    there = copy_database(source, postgres_url, batch=4)
    again = copy_database(postgres_url, back, batch=4)
    assert there.rows == again.rows
    assert sum(again.rows.values()) == 60
    assert await snapshot(back) == await snapshot(source)
    assert table_rows(back) == table_rows(source)
    assert await enqueue_one(back) == 37


async def test_sqlite_to_sqlite(tmp_path: Path) -> None:
    source, target = sqlite_url(tmp_path, "a.db"), sqlite_url(tmp_path, "sub/../b.db")
    (tmp_path / "sub").mkdir()
    await populate(source)
    assert invoke("--from", source, "--to", target)[0] == 0
    assert table_rows(target) == table_rows(source)


async def test_the_same_database_is_refused(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await populate(postgres_url, extra_runs=1)
    before = table_rows(postgres_url)
    code, out = invoke("--from", postgres_url, "--to", postgres_url, "--force")
    assert (code, out.splitlines()[-1]) == (
        2, f"error: --from and --to are the same database ({postgres_url})",
    )  # fmt: skip
    # The same one behind another URL: seen once both are open, before anything is written.
    aliased, _ = with_password(postgres_url)
    code, out = invoke("--from", postgres_url, "--to", aliased, "--force")
    assert code == 2
    assert "are the same database" in out
    assert table_rows(postgres_url) == before
    # A SQLite file named two ways.
    monkeypatch.chdir(tmp_path)
    await populate(sqlite_url(tmp_path, "cronlink.db"), extra_runs=1)
    code, out = invoke(
        "--from", "sqlite:///cronlink.db", "--to", f"sqlite:///{tmp_path}/x/../cronlink.db"
    )
    assert code == 2
    assert "are the same database" in out


async def test_a_source_not_at_this_schema_revision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cronlink.db"
    await populate(f"sqlite:///{path}", extra_runs=1)
    target = tmp_path / "target.db"
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    code, out = invoke("--from", f"sqlite:///{path}", "--to", f"sqlite:///{target}")
    assert code == 1
    assert f"error: source sqlite:///{path}: the database is at schema revision '9999'" in out
    assert "upgrade cronlink" in out
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM alembic_version")
    code, out = invoke("--from", f"sqlite:///{path}", "--to", f"sqlite:///{target}")
    assert code == 1
    assert f"is at schema revision None, this cronlink's is '{head_revision()}'" in out
    assert "run `cronlink db upgrade --database-url SOURCE` on the source first" in out
    assert not target.exists()


async def test_a_missing_or_foreign_source_is_refused(tmp_path: Path) -> None:
    missing, target = tmp_path / "nothing.db", sqlite_url(tmp_path, "target.db")
    code, out = invoke("--from", f"sqlite:///{missing}", "--to", target)
    assert code == 1
    assert f"{missing} does not exist; nothing copied" in out
    assert not missing.exists()
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    code, out = invoke("--from", f"sqlite:///{foreign}", "--to", target)
    assert code == 1
    assert f"source sqlite:///{foreign} is not a cronlink database" in out


async def test_a_target_of_another_application_is_refused(tmp_path: Path) -> None:
    source = sqlite_url(tmp_path, "cronlink.db")
    await populate(source, extra_runs=1)
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    code, out = invoke("--from", source, "--to", f"sqlite:///{foreign}", "--force")
    assert code == 1
    assert "holds tables of another application (invoices…)" in out
    with sqlite3.connect(foreign) as db:
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("invoices",)]


async def add_connection(url: str, *, delete_it: bool = False) -> int:
    store = store_for(url)
    await store.open()
    try:
        added = await store.connections.add(
            provider="sandbox", owner="bob", scopes="", now=T0,
            seal=lambda cid: (f"sealed-secrets-of-{cid}", "key-id"),
            expires_at=None, refresh_due_at=None,
        )  # fmt: skip
        if delete_it:
            await store.connections.delete(added.id, T0)
        return added.id
    finally:
        await store.close()


async def test_ids_of_deleted_rows_stay_spent_in_the_copy(
    tmp_path: Path, postgres_url: str
) -> None:
    """The newest connection was deleted before the copy: its id is not given again after
    it, in either direction."""
    source, back = sqlite_url(tmp_path, "cronlink.db"), sqlite_url(tmp_path, "back.db")
    await populate(source)
    deleted = await add_connection(source, delete_it=True)
    assert invoke("--from", source, "--to", postgres_url)[0] == 0
    assert invoke("--from", postgres_url, "--to", back)[0] == 0
    assert await add_connection(postgres_url) == deleted + 1
    assert await add_connection(back) == deleted + 1
