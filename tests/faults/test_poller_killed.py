"""A poller SIGKILLed between fetching a burst and committing it: nothing of that poll is
stored, and once its lease lapses the next poller reads the same items again and records
each exactly once, with exactly one run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from cronlink.automations.service import Automations
from tests.acceptance.automation_kit import BUILTIN
from tests.faults.processes import ROOT
from tests.faults.sandboxed import Setup, sandboxed

LEASE = 2.0
pytestmark = pytest.mark.slow


async def _poller(setup: Setup, url: str, pause: float, marker: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.poller", url, str(LEASE), str(pause), str(marker),
        env={**os.environ, **setup.env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.timeout(90)
@pytest.mark.parametrize("trigger", ["new_email", "new_item", "change"])
async def test_a_poller_killed_before_its_commit_loses_and_repeats_nothing(
    tmp_path: Path, any_url: str, trigger: str
) -> None:
    async with sandboxed(any_url, tmp_path) as setup:
        tokens = setup.sandbox.grants.mint("alice")
        connection = await setup.connections.add(
            provider="sandbox", owner="alice", access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"],
        )  # fmt: skip
        automations = Automations(
            setup.connections.store, setup.connections.providers, setup.connections.session,
            setup.connections, process_job=BUILTIN["process-automation"],
        )  # fmt: skip
        automation = await automations.add(
            name="inbox", connection_id=connection.id, trigger=trigger,
            steps=[{"name": "s", "call": "m:f"}], start="beginning",
        )  # fmt: skip
        items = setup.sandbox.feed.add({"count": 25})
        marker = tmp_path / "fetched"
        victim = await _poller(setup, any_url, 30, marker)
        async with asyncio.timeout(30):
            while not marker.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        assert await automations.events(automation.id) == []
        assert (await automations.get(automation.id)).cursor.watermark is None
        await asyncio.sleep(LEASE)
        survivor = await _poller(setup, any_url, 0, marker)
        output, _ = await survivor.communicate()
        assert survivor.returncode == 0, output.decode()
        assert "polls=1 events=25 lost=0" in output.decode()
        events = await automations.events(automation.id)
        assert [e.key for e in events] == [str(i["id"]) for i in items]
        # Each event has a run; the automation's one slot means one run drains them all.
        assert len({e.run_id for e in events if e.run_id is not None}) == 1
        assert all(e.run_id is not None for e in events)
