"""The services over connections, built from the settings: `Connections` (the key from
CRONLINK_SECRET_KEY, the providers, the store and the shared HTTP session; a key that does
not open the database is refused) and the `Automations` over them."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cronlink.automations.jobs import PROCESS_AUTOMATION
from cronlink.automations.service import Automations
from cronlink.connections.crypto import ENV, Vault
from cronlink.connections.health import Policy
from cronlink.connections.jobs import REFRESH_CONNECTION
from cronlink.connections.providers import Providers
from cronlink.connections.service import Connections
from cronlink.errors import ConfigError
from cronlink.http_client import new_session
from cronlink.store import store_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

    from cronlink.app import App
    from cronlink.config import Settings
    from cronlink.store import Store


def providers_for(settings: Settings) -> Providers:
    folder = settings.connections.providers if settings.connections else None
    if folder is None:
        return Providers.load()
    base = settings.config_path.parent if settings.config_path else Path()
    return Providers.load(base / folder)


async def open_connections(
    settings: Settings,
    store: Store,
    session: aiohttp.ClientSession,
    app: App | None = None,
    *,
    check_keys: bool = True,
) -> Connections:
    """Connections ready to use; raises `ConfigError` when they are not configured, and
    (`check_keys`) `SecretKeyError` when the database holds secrets sealed with a key
    CRONLINK_SECRET_KEY lacks. Only what needs no secret may skip the check: deleting a
    connection, forgetting what a lost key sealed."""
    if settings.connections is None:
        raise ConfigError(
            "connections are not configured: add a [connections] section to cronlink.toml "
            f"and set {ENV} (`cronlink keys generate` makes a key)"
        )
    model = settings.connections
    connections = Connections(
        store,
        Vault.from_text(os.environ.get(ENV)),
        providers_for(settings),
        session,
        refresh_job=app.jobs.get(REFRESH_CONNECTION) if app else None,
        health_policy=Policy(down_after=model.down_after, up_after=model.up_after),
        passive_window=model.passive_window,
        probe_concurrency=model.probe_concurrency,
        refresh_lease=model.refresh_lease,
    )
    if check_keys:
        await connections.check_keys()
    return connections


def open_automations(
    settings: Settings,
    connections: Connections,
    app: App | None = None,
) -> Automations:
    """The automation service over the connections' store, providers and HTTP session."""
    model = settings.automations
    return Automations(
        connections.store,
        connections.providers,
        connections.session,
        connections,
        process_job=app.jobs.get(PROCESS_AUTOMATION) if app else None,
        batch=model.poll_batch,
        poll_concurrency=model.poll_concurrency,
        poll_lease=model.poll_lease,
        retention=model.retention,
        stalled_after=model.stalled_after,
        failing_after=model.failing_after,
        poll_schedule=model.poll_schedule,
        models=settings.ai.models.keys(),
    )


@asynccontextmanager
async def connections_for(
    settings: Settings, app: App | None = None, *, check_keys: bool = True
) -> AsyncIterator[Connections]:
    """`Connections` with their own store and HTTP session, closed on the way out."""
    store = store_for(settings.database_url)
    session = new_session(settings.egress)
    try:
        await store.open()
        yield await open_connections(settings, store, session, app, check_keys=check_keys)
    finally:
        await session.close()
        await store.close()


@asynccontextmanager
async def automations_for(settings: Settings, app: App | None = None) -> AsyncIterator[Automations]:
    """`Automations` with their own connections, store and HTTP session."""
    async with connections_for(settings, app) as connections:
        yield open_automations(settings, connections, app)
