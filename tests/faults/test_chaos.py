"""Three schedulers and four workers on one PostgreSQL database, a job due every second with
`misfire = "all"`, while a chaos loop SIGKILLs a random one every 2–5 s and restarts it:
every second of the window gets exactly one run, and every run succeeds."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cronlink.records.runs import Fate, RunState
from cronlink.store import RunFilter, Store
from tests.acceptance.worker_kit import wait_until
from tests.faults.processes import Role, Roles, opened
from tests.postgres import fresh_schema

# As test_hostile_provider: on the same pytest process, one after the other.
pytestmark = pytest.mark.xdist_group("busiest")

CHAOS_SECONDS = 60
CONFIG = """\
database_url = "{url}"
app = "tests.faults.handlers:app"
[worker]
lease = "1s"
heartbeat = "200ms"
poll = "100ms"
[[jobs]]
name = "tick"
handler = "tests.faults.handlers:tick"
schedule = "* * * * * *"
misfire = "all"
overlap = "allow"
max_attempts = 20
min_backoff = "100ms"
max_backoff = "1s"
"""


async def busy_workers(store: Store) -> set[str]:
    """Names (host:pid:tier) of the workers holding a running run."""
    running = await store.list_runs(RunFilter(state=RunState.RUNNING, limit=100))
    return {run.worker for run in running if run.worker}


async def chaos(roles: list[Role], store: Store, until: float, rng: random.Random) -> list[str]:
    """Kill and restart a random role every 2–5 s; a killed worker is one holding a run."""
    killed: list[str] = []
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        await asyncio.sleep(rng.uniform(2, 5))
        victim = rng.choice(roles)
        if victim.args[0] == "worker":
            holding = {int(name.split(":")[1]) for name in await busy_workers(store)}
            workers = [r for r in roles if r.args[0] == "worker" and r.pid in holding]
            victim = rng.choice(workers or [victim])
        assert victim.alive(), f"{victim.args} exited by itself:\n{victim.output()[-3000:]}"
        victim.kill()
        killed.append(f"{victim.args[0]}:{victim.pid}")
        victim.start()
    return killed


@pytest.mark.slow
async def test_every_second_runs_once_while_roles_are_killed(tmp_path: Path, roles: Roles) -> None:
    with fresh_schema() as url:
        (tmp_path / "cronlink.toml").write_text(CONFIG.format(url=url))
        started = [roles("scheduler") for _ in range(3)]
        started += [roles("worker", "--tier", "light") for _ in range(4)]
        async with opened(url) as store:
            for role in started:
                role.start()
            try:

                async def fired() -> bool:
                    return bool(await store.ledger("tick", None, 1))

                await wait_until(fired, 30)
                # One second more than the window asked for: schedulers fire up to half a
                # second ahead, so the first instant may lie after this moment.
                until = asyncio.get_running_loop().time() + CHAOS_SECONDS + 1
                killed = await chaos(started, store, until, random.Random())
                window_end = datetime.now(UTC) - timedelta(seconds=1)

                async def window_done() -> bool:
                    runs = await store.list_runs(RunFilter(job="tick", limit=1000))
                    return all(r.state.finished for r in runs if r.scheduled_for <= window_end)  # type: ignore[operator]

                await wait_until(window_done, 60)
                # The role restarted last may still be importing: SIGTERM would find no
                # handler yet and the exit code would say nothing about a graceful stop.
                await asyncio.sleep(5)
            finally:
                codes = [role.stop() for role in started]
            fires = await store.ledger("tick", None, 1000)
            runs = await store.list_runs(RunFilter(job="tick", limit=1000))
    assert codes == [0] * len(started), "\n".join(r.output()[-2000:] for r in started)
    fires = [f for f in fires if f.scheduled_for <= window_end]
    runs = [r for r in runs if r.scheduled_for is not None and r.scheduled_for <= window_end]
    first = min(f.scheduled_for for f in fires)
    seconds = int((window_end - first).total_seconds()) + 1
    expected = {first + timedelta(seconds=i) for i in range(seconds)}
    assert seconds >= CHAOS_SECONDS
    assert {f.scheduled_for for f in fires} == expected, "an instant is missing from the ledger"
    assert {f.fate for f in fires} == {Fate.RUN}
    instants = sorted(r.scheduled_for for r in runs if r.scheduled_for is not None)
    assert instants == sorted(expected), "an instant has no run, or more than one"
    assert {f.run_id for f in fires} == {r.id for r in runs}
    assert {r.state for r in runs} == {RunState.SUCCEEDED}
    assert any(k.startswith("worker") for k in killed)
    retried = [r for r in runs if r.attempt > 1]
    assert retried, f"no run was retried although workers were killed: {killed}"
    assert all(r.result == str(r.attempt) for r in runs)
