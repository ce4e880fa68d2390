"""A running sandbox provider and `Connections` wired to it, for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from cronlink.builtin_jobs import connection_jobs
from cronlink.clock import Clock, SystemClock
from cronlink.config_models import ConnectionsModel
from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.sandbox import Sandbox
from cronlink.store import Store


@dataclass
class KitClock:
    """The kit's time, which its services are built with: `source`'s (the system's unless
    a test hands in its own), moved on by `ahead`."""

    source: Clock = field(default_factory=SystemClock)
    ahead: timedelta = timedelta(0)

    def now(self) -> datetime:
        return self.source.now() + self.ahead


@dataclass
class Kit:
    sandbox: Sandbox
    connections: Connections
    session: aiohttp.ClientSession
    key: str
    clock: KitClock

    async def mint(self, user: str = "alice") -> dict[str, Any]:
        return self.sandbox.grants.mint(user)

    async def connect(self, user: str = "alice", **changes: Any) -> int:
        tokens = await self.mint(user)
        added = await self.connections.add(
            provider="sandbox", owner=user, access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"], **changes,
        )  # fmt: skip
        return added.id

    async def stats(self) -> dict[str, int]:
        async with self.session.get(f"{self.sandbox.url}/sandbox/stats") as response:
            return dict(await response.json())


@pytest.fixture
async def kit(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kit]:
    async with Sandbox() as sandbox:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", sandbox.url)
        key = generate_key()
        session = new_session(LOOPBACK)
        refresh_job = next(
            j for j in connection_jobs(ConnectionsModel()) if j.name == "refresh-connection"
        )
        clock = KitClock()
        connections = Connections(
            sqlite_store, Vault.from_text(key), Providers.load(), session,
            refresh_job=refresh_job, clock=clock,
        )  # fmt: skip
        yield Kit(sandbox, connections, session, key, clock)
        await session.close()
