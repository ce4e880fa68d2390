"""A process that polls every due automation once:
`python -m tests.faults.poller URL LEASE_S PAUSE_S MARKER`.

With PAUSE_S > 0 it stops between fetching and committing a batch (writing MARKER
first), so a test can SIGKILL it there. It goes through `Automations.poll_due`, the code
the `poll-triggers` job runs, with a `cronlink worker`'s environment.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cronlink.automations.service import Automations
from cronlink.connections.crypto import ENV, Vault
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.store.automation_store import AutomationStore
from tests.acceptance.automation_kit import BUILTIN
from tests.faults.processes import opened


def _pause_before_commit(seconds: float, marker: Path) -> None:
    commit = AutomationStore.record_polls

    async def paused(self: AutomationStore, *args: Any, **kwargs: Any) -> Any:
        await asyncio.to_thread(marker.write_text, "fetched")
        await asyncio.sleep(seconds)
        return await commit(self, *args, **kwargs)

    AutomationStore.record_polls = paused  # type: ignore[assignment]


async def main(url: str, lease: float) -> None:
    session = new_session(LOOPBACK)
    async with opened(url) as store:
        providers = Providers.load()
        connections = Connections(store, Vault.from_text(os.environ[ENV]), providers, session)
        automations = Automations(
            store, providers, session, connections, process_job=BUILTIN["process-automation"],
            poll_lease=timedelta(seconds=lease),
        )  # fmt: skip
        try:
            tally = await automations.poll_due(datetime.now(UTC))
            print(f"polls={tally.polls} events={tally.events} lost={tally.lost}", flush=True)
        finally:
            await session.close()


if __name__ == "__main__":
    if float(sys.argv[3]) > 0:
        _pause_before_commit(float(sys.argv[3]), Path(sys.argv[4]))
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
