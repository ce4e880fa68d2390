"""A `sync` of 10,000 records on a real `cronlink worker --tier heavy`, whose worker is
SIGKILLed twice mid-way: its heavy process dies with it, the lease lapses, the run is
retried by the next worker from the last checkpoint, and the destination holds each
record exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cronlink.automations.service import Automations
from cronlink.records.automations import EventState
from cronlink.records.runs import RunState
from tests.acceptance.automation_kit import BUILTIN
from tests.acceptance.worker_kit import wait_until
from tests.faults.processes import Roles
from tests.faults.sandboxed import sandboxed

RECORDS = 10_000
WORKER = '[worker]\nlease = "5s"\nheartbeat = "1s"\npoll = "100ms"\n'
SYNC = [{
    "name": "copy",
    "sync": {"source": {"path": "/api/records", "page_size": 500},
             "destination": {"path": "/api/records", "batch_size": 250}},
}]  # fmt: skip
pytestmark = pytest.mark.slow


@pytest.mark.timeout(150)
async def test_a_sync_whose_worker_is_killed_twice_writes_each_record_once(
    tmp_path: Path, any_url: str, roles: Roles
) -> None:
    async with sandboxed(any_url, tmp_path, WORKER) as setup:
        sandbox = setup.sandbox
        sandbox.feed.records.extend(
            {"id": n, "name": f"record {n}", "amount": n} for n in range(1, RECORDS + 1)
        )
        sandbox.configure(latency_ms=60)  # about 5 s for the whole copy
        tokens = sandbox.grants.mint("alice")
        connection = await setup.connections.add(
            provider="sandbox", owner="alice", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"],
        )  # fmt: skip
        automations = Automations(
            setup.connections.store, setup.connections.providers, setup.connections.session,
            setup.connections, process_job=BUILTIN["process-automation"],
        )  # fmt: skip
        nightly = await automations.add(
            name="nightly", connection_id=connection.id, schedule="0 2 * * *", steps=SYNC
        )
        event = await automations.run_now(nightly.id)
        scheduler = roles("scheduler", env=setup.env)  # it reaps lapsed leases
        workers = [roles("worker", "--tier", "heavy", env=setup.env) for _ in range(3)]
        scheduler.start()
        try:
            for worker, written in zip(workers, (2500, 6000, None), strict=True):
                worker.start()
                if written is None:
                    break

                async def far_enough(at_least: int = written) -> bool:
                    return len(sandbox.feed.sinks.get("records", [])) >= at_least

                await wait_until(far_enough, within=60)
                worker.kill()

            async def finished() -> bool:
                done = await automations.store.automations.event(event.id)
                return done.state is EventState.DONE

            try:
                await wait_until(finished, within=90)
            except AssertionError:
                run = await automations.store.get_run(event.run_id or 0)
                logs = "\n".join(r.output()[-3000:] for r in (scheduler, *workers))
                raise AssertionError(f"not done: run {run}\n{logs}") from None
        finally:
            codes = [role.stop() for role in (scheduler, workers[-1])]
        assert codes == [0, 0], "\n".join(r.output()[-3000:] for r in (scheduler, *workers))
        run = await automations.store.get_run(event.run_id or 0)
    assert run.state is RunState.SUCCEEDED
    assert run.attempt == 3
    copies = Counter(r["id"] for r in sandbox.feed.sinks["records"])
    assert set(copies) == set(range(1, RECORDS + 1))
    assert max(copies.values()) == 1
