"""A sandbox provider served from the test's event loop, and a connection on it, for
fault tests whose workers are real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cronlink.connections.crypto import Vault, generate_key
from cronlink.connections.providers import Providers
from cronlink.connections.refreshing import REFRESH_LEASE
from cronlink.connections.service import Connections
from cronlink.egress import LOOPBACK
from cronlink.http_client import new_session
from cronlink.jobs import Job
from cronlink.sandbox import Sandbox
from tests.faults.processes import opened


@dataclass
class Setup:
    sandbox: Sandbox
    connections: Connections
    env: dict[str, str]


@asynccontextmanager
async def sandboxed(
    url: str,
    cwd: Path,
    toml: str = "",
    refresh_job: Job | None = None,
    refresh_lease: timedelta = REFRESH_LEASE,
) -> AsyncIterator[Setup]:
    """The sandbox, the environment a `cronlink` process needs to use it, `cronlink.toml`
    with connections on (`toml` goes on from its `[connections]` section), and
    `Connections` for the test itself (queuing a connection's first refresh run when given
    the `refresh_job`)."""
    key = generate_key()
    (cwd / "cronlink.toml").write_text(f'database_url = "{url}"\n[connections]\n{toml}')
    async with Sandbox() as sandbox, opened(url) as store:
        env = {"CRONLINK_SECRET_KEY": key, "CRONLINK_SANDBOX_URL": sandbox.url}
        session = new_session(LOOPBACK)
        providers = Providers.load()
        try:
            connections = Connections(
                store, Vault.from_text(key), providers, session, refresh_job=refresh_job,
                refresh_lease=refresh_lease,
            )  # fmt: skip
            yield Setup(sandbox, connections, env)
        finally:
            await session.close()
