"""PostgreSQL restarted in the middle of 5,000 runs: every run ends `succeeded`, every side
effect is applied once (a ledger keyed by the idempotency key), and no role process exits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from cronlink.jobs import new_run
from cronlink.records.runs import Reason, RunState
from cronlink.store import RunFilter, Store
from tests.acceptance.worker_kit import wait_until
from tests.faults.handlers import EFFECTS_TABLE, app
from tests.faults.processes import Roles, opened
from tests.postgres import private_server

RUNS = 5000
CONFIG = """\
database_url = "{url}"
app = "tests.faults.handlers:app"
[worker]
lease = "2s"
heartbeat = "300ms"
poll = "100ms"
"""


async def succeeded(store: Store) -> int:
    try:
        done = await store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=RUNS + 1))
    except Exception:  # the database may still be coming back
        return -1
    return len(done)


@pytest.mark.slow
async def test_runs_survive_a_postgres_restart(tmp_path: Path, roles: Roles) -> None:
    with private_server() as server:
        url = server.url
        (tmp_path / "cronlink.toml").write_text(CONFIG.format(url=url))
        env = {"CRONLINK_TEST_EFFECTS_URL": url}
        started = [roles("scheduler", env=env)]
        started += [roles("worker", "--tier", "light", env=env) for _ in range(2)]
        async with opened(url) as store:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(EFFECTS_TABLE)
            now = datetime.now(UTC)
            job = app.get("effect")
            for _ in range(RUNS):
                await store.enqueue(new_run(job, Reason.API), now)
            for role in started:
                role.start()
            try:

                async def under_way() -> bool:
                    return await succeeded(store) >= RUNS // 5

                await wait_until(under_way, 60)
                before = await succeeded(store)
                await asyncio.to_thread(server.restart)
                await asyncio.sleep(0.5)
                dead = [r.output()[-3000:] for r in started if not r.alive()]
                assert not dead, f"a role exited when PostgreSQL restarted: {dead}"

                async def all_done() -> bool:
                    return await succeeded(store) == RUNS

                await wait_until(all_done, 120)
            finally:
                codes = [role.stop() for role in started]
            runs = await store.list_runs(RunFilter(limit=RUNS + 1))
        with psycopg.connect(url) as conn:
            effects: dict[str, int] = dict(
                conn.execute("SELECT key, run_id FROM effects").fetchall()
            )
            redelivered = conn.execute("SELECT count(*) FROM effects WHERE deliveries > 1")
            redeliveries = redelivered.fetchone()
    assert codes == [0] * len(started), "\n".join(r.output()[-2000:] for r in started)
    assert before < RUNS, "the load was over before PostgreSQL restarted"
    assert len(runs) == RUNS
    assert {r.state for r in runs} == {RunState.SUCCEEDED}
    assert effects == {r.idempotency_key: r.id for r in runs}, "an effect is missing or extra"
    assert redeliveries is not None
    print(f"PostgreSQL restarted; {redeliveries[0]} runs delivered again, effects applied once")
