"""`cronlink demo`: the sandbox provider, `cronlink run`, and a handful of connections with
short-lived tokens, so that refreshes and health checks show up within a minute.

It keeps to its own database (`cronlink-demo.db`) and, when CRONLINK_SECRET_KEY is not set,
its own key (`.cronlink-demo.key`, readable by you only). The sandbox keeps its grants in
memory, so each start replaces the previous demo connections with fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cronlink.app import App
from cronlink.config import ConnectionsModel, Settings, connection_jobs
from cronlink.connections.crypto import ENV, generate_key
from cronlink.connections.jobs import CHECK_HEALTH
from cronlink.connections.setup import open_connections
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records import Reason, Tier
from cronlink.runtime import open_store, run_roles
from cronlink.sandbox import Sandbox

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.connections.service import Connections

DATABASE = "sqlite:///cronlink-demo.db"
KEY_FILE = Path(".cronlink-demo.key")
OWNERS = ("demo-ana", "demo-ben", "demo-chen", "demo-dana", "demo-eli")
REVOKED = "demo-eli"
"""Its grant is revoked at the provider: it shows what `needs_reauth` looks like."""


def demo_settings(database_url: str | None = None) -> Settings:
    """The demo's own settings: connections on, health checked every minute, its own
    database; nothing from cronlink.toml or the environment (no real jobs, no real data)."""
    return Settings(
        database_url=database_url or DATABASE,
        connections=ConnectionsModel(health_schedule="* * * * *"),
    )


def demo_key() -> None:
    """Use CRONLINK_SECRET_KEY, or the demo's own key file (made on first use)."""
    if os.environ.get(ENV):
        return
    if not KEY_FILE.exists():
        KEY_FILE.touch(mode=0o600)
        KEY_FILE.write_text(generate_key())
    os.environ[ENV] = KEY_FILE.read_text().strip()


async def demo(
    settings: Settings,
    *,
    port: int,
    lifetime: float,
    say: Callable[[str], None],
    stop: asyncio.Event | None = None,
) -> None:
    async with Sandbox(port=port) as sandbox:
        os.environ["CRONLINK_SANDBOX_URL"] = sandbox.url
        sandbox.configure(token_lifetime=lifetime)
        app = App()
        for job in connection_jobs(settings.connections or ConnectionsModel()):
            app.add(job)
        store = await open_store(settings)
        session = new_session()
        try:
            connections = await open_connections(settings, store, session, app)
            await _seed(connections, sandbox, lifetime)
            await store.enqueue(new_run(app.get(CHECK_HEALTH), Reason.MANUAL), datetime.now(UTC))
            say(
                f"demo: sandbox provider at {sandbox.url}, {len(OWNERS)} connections whose "
                f"tokens last {lifetime:g}s, database {settings.database_url}; Ctrl-C stops"
            )
            printer = asyncio.create_task(_print_events(connections, say))
            try:
                await run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT, Tier.HEAVY),
                                stop=stop)  # fmt: skip
            finally:
                printer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await printer
        finally:
            await session.close()
            await store.close()


async def _seed(connections: Connections, sandbox: Sandbox, lifetime: float) -> None:
    for old in await connections.find(provider="sandbox", limit=1000):
        if old.owner in OWNERS:
            await connections.delete(old.id)
    for owner in OWNERS:
        tokens = sandbox.grants.mint(owner)
        await connections.add(
            provider="sandbox", owner=owner, access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=lifetime,
        )  # fmt: skip
        if owner == REVOKED:
            sandbox.grants.grants[max(sandbox.grants.grants)].revoked = True


async def _print_events(connections: Connections, say: Callable[[str], None]) -> None:
    seen = 0
    while backlog := await connections.events(after_id=seen):  # start after what was there
        seen = backlog[-1].id
    while True:
        await asyncio.sleep(1)
        for event in await connections.events(after_id=seen):
            when = event.at.strftime("%H:%M:%S")
            say(f"{when} connection {event.connection_id}: {event.kind}: {event.detail}")
            seen = event.id
