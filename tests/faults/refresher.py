"""A process that refreshes one connection over and over until the sandbox has seen
`count` refreshes: `python -m tests.faults.refresher URL CONNECTION_ID COUNT [LEASE_S]`.

It goes through `Connections.refresh`, the code the `refresh-connection` job runs, with
the environment a `cronlink worker` has (CRONLINK_SECRET_KEY, CRONLINK_SANDBOX_URL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import timedelta

from cronlink.connections.crypto import ENV, Vault
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from tests.faults.processes import opened


async def main(url: str, connection_id: int, count: int, lease: float) -> None:
    session = new_session(LOOPBACK)
    async with opened(url) as store:
        vault = Vault.from_text(os.environ[ENV])
        connections = Connections(
            store, vault, Providers.load(), session, refresh_lease=timedelta(seconds=lease)
        )
        stats = f"{os.environ['CRONLINK_SANDBOX_URL']}/sandbox/stats"
        try:
            while True:
                await connections.refresh(connection_id)
                async with session.get(stats) as response:
                    if (await response.json())["refreshes"] >= count:
                        return
        finally:
            await session.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)  # each refresh it made is a line
    lease = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), lease))
