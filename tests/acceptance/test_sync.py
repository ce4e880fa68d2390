"""The `sync` step: 10,000 records copied between two sandbox endpoints in batches, with
the heavy process doing it killed twice mid-way (SIGKILL): it resumes from its last
checkpoint and the destination holds each record exactly once; bad records are set
aside with their errors while the rest of their batch goes through."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import psutil

from cronlink.records.automations import EventState
from cronlink.records.runs import RunState
from tests.acceptance.automation_kit import AutoKit, auto, heavy_worker
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.worker_kit import finished, wait_until

__all__ = ["auto", "kit"]
RECORDS = 10_000
SYNC = {
    "name": "copy",
    "sync": {
        "source": {"path": "/api/records", "page_size": 500},
        "destination": {"path": "/api/records", "batch_size": 250},
        "transform": "tests.acceptance.automation_steps:double",
    },
    "max_attempts": 1,
}


def _heavy_children() -> list[psutil.Process]:
    """The processes running heavy runs: children of the forkserver this test started."""
    servers = [
        p for p in psutil.Process().children()
        if "multiprocessing.forkserver" in " ".join(p.cmdline())
    ]  # fmt: skip
    return [child for server in servers for child in server.children()]


async def _kill_when(auto: AutoKit, written: int) -> None:
    async def far_enough() -> bool:
        return len(auto.kit.sandbox.feed.sinks.get("records", [])) >= written

    await wait_until(far_enough, within=60)
    victims = _heavy_children()
    assert victims, "no heavy run process to kill"
    for victim in victims:
        victim.send_signal(signal.SIGKILL)


async def test_a_sync_killed_twice_copies_each_record_once(auto: AutoKit) -> None:
    async with auto.kit.session.post(
        f"{auto.kit.sandbox.url}/sandbox/records", json={"count": RECORDS, "bad_every": 2500}
    ) as answer:
        assert answer.status == 200
    auto.kit.sandbox.configure(latency_ms=40)
    cid = await auto.kit.connect()
    automation = await auto.automations.add(
        name="nightly-copy", connection_id=cid, trigger="new_item", steps=[SYNC],
        start="beginning",
    )  # fmt: skip
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):
        await _kill_when(auto, 2500)
        await _kill_when(auto, 6000)
        [event] = await auto.automations.events(automation.id)
        run = await finished(auto.automations.store, event.run_id or 0, within=120)
    assert run.state is RunState.SUCCEEDED
    assert run.attempt == 3  # two attempts killed, the third resumed and finished
    written = Counter(r["id"] for r in auto.kit.sandbox.feed.sinks["records"])
    assert max(written.values()) == 1
    bad = {2500, 5000, 7500, 10000}
    refused_by_transform = {n for n in range(1, RECORDS + 1) if n % 1000 == 7}
    assert set(written) == set(range(1, RECORDS + 1)) - bad - refused_by_transform
    assert all(r["amount"] == (r["id"] % 997) * 2 for r in auto.kit.sandbox.feed.sinks["records"])
    done = await auto.automations.store.automations.event(event.id)
    assert done.state is EventState.DONE
    summary = done.outputs["copy"]
    assert summary["copied"] == len(written)
    assert summary["rejected_count"] == len(bad) + len(refused_by_transform)
    assert {r["id"] for r in summary["rejected"]} == bad | refused_by_transform
    assert summary["pages"] == RECORDS // 500


async def test_a_scheduled_automation_runs_once_per_instant(auto: AutoKit) -> None:
    cid = await auto.kit.connect()
    automation = await auto.automations.add(
        name="report", connection_id=cid, schedule="0 2 * * *",
        steps=[{"name": "s", "call": "tests.acceptance.automation_steps:remember"}],
        params={"trace": str(auto.trace)},
    )  # fmt: skip
    due = datetime.now(UTC) - timedelta(minutes=1)
    await auto.automations.store.transact(
        lambda c: c.exec_driver_sql(
            "UPDATE automations SET next_poll_at = ? WHERE id = ?",
            (int(due.timestamp() * 1_000_000), automation.id),
        ),
        write=True,
    )
    first = await auto.automations.sweep()
    second = await auto.automations.sweep()
    assert (first["scheduled"], second["scheduled"]) == (1, 0)
    [event] = await auto.automations.events(automation.id)
    assert event.key == f"schedule:{due.isoformat()}"
    moved = await auto.automations.get(automation.id)
    assert moved.next_poll_at is not None
    assert moved.next_poll_at > datetime.now(UTC)
    async with heavy_worker(auto):
        await asyncio.wait_for(finished(auto.automations.store, event.run_id or 0), 60)
    assert (await auto.automations.store.automations.event(event.id)).state is EventState.DONE
