"""`cronlink demo`: the sandbox provider, `cronlink run`, and a handful of connections with
short-lived tokens, so that refreshes and health checks show up within a minute; an
automation that classifies each new email the sandbox sends and posts a summary to a
webhook; and a nightly sync, run once at the start, that copies 10,000 records.

It keeps to its own database (`cronlink-demo.db`) and, when CRONLINK_SECRET_KEY is not set,
its own key (`.cronlink-demo.key`, readable by you only). The sandbox keeps its grants in
memory, so each start replaces the previous demo connections with fresh ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronlink.app import App
from cronlink.automations.jobs import POLL_TRIGGERS
from cronlink.builtin_jobs import connection_jobs
from cronlink.config import Settings
from cronlink.config_models import AutomationsModel, ConnectionsModel
from cronlink.connections.crypto import ENV, generate_key
from cronlink.connections.jobs import CHECK_HEALTH
from cronlink.egress import LOOPBACK
from cronlink.errors import AutomationNotFoundError
from cronlink.http_client import new_session
from cronlink.jobs import new_run
from cronlink.records.automations import EventState
from cronlink.records.runs import Reason, Tier
from cronlink.runtime import open_store, run_roles
from cronlink.sandbox import Sandbox
from cronlink.services import open_automations, open_connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections

DATABASE = "sqlite:///cronlink-demo.db"
KEY_FILE = Path(".cronlink-demo.key")
OWNERS = ("demo-ana", "demo-ben", "demo-chen", "demo-dana", "demo-eli")
REVOKED = "demo-eli"
"""Its grant is revoked at the provider: it shows what `needs_reauth` looks like."""
EMAIL_EVERY = 5.0
SYNC_RECORDS = 10_000
INBOX_STEPS: list[dict[str, Any]] = [
    {"name": "classify", "call": "cronlink.examples:classify_email"},
    {"name": "notify", "http": {"url": "/api/hooks/summaries", "json": {
        "subject": "{steps.classify.subject}", "label": "{steps.classify.label}",
        "email": "{event.id}"}}},
]  # fmt: skip
SYNC_STEPS: list[dict[str, Any]] = [
    {"name": "copy", "sync": {"source": {"path": "/api/records"},
                              "destination": {"path": "/api/records"}}},
]  # fmt: skip


def demo_settings(database_url: str | None = None) -> Settings:
    """The demo's own settings: connections on, health checked every minute, its own
    database, outbound requests to loopback (its sandbox on 127.0.0.1); nothing from
    cronlink.toml or the environment (no real jobs, no real data)."""
    return Settings(
        database_url=database_url or DATABASE,
        egress=LOOPBACK,
        connections=ConnectionsModel(health_schedule="* * * * *"),
        automations=AutomationsModel(process_schedule="* * * * *"),
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
        for job in connection_jobs(
            settings.connections or ConnectionsModel(), settings.automations
        ):
            app.add(job)
        store = await open_store(settings)
        session = new_session(settings.egress)
        try:
            connections = await open_connections(settings, store, session, app)
            ids = await _seed(connections, sandbox, lifetime)
            automations = open_automations(settings, connections, app)
            await _seed_automations(automations, sandbox, ids)
            for starter in (CHECK_HEALTH, POLL_TRIGGERS):
                await store.enqueue(new_run(app.get(starter), Reason.MANUAL), datetime.now(UTC))
            say(
                f"demo: sandbox provider at {sandbox.url}, {len(OWNERS)} connections whose "
                f"tokens last {lifetime:g}s, a new email every {EMAIL_EVERY:g}s, database "
                f"{settings.database_url}; Ctrl-C stops"
            )
            chores = [
                asyncio.create_task(_print_events(connections, say)),
                asyncio.create_task(_print_automations(automations, sandbox, say)),
                asyncio.create_task(_send_emails(sandbox)),
            ]
            try:
                await run_roles(settings, app, scheduler=True, tiers=(Tier.LIGHT, Tier.HEAVY),
                                stop=stop)  # fmt: skip
            finally:
                for chore in chores:
                    chore.cancel()
                await asyncio.gather(*chores, return_exceptions=True)
        finally:
            await session.close()
            await store.close()


async def _seed(connections: Connections, sandbox: Sandbox, lifetime: float) -> list[int]:
    for old in await connections.find(provider="sandbox", limit=1000):
        if old.owner in OWNERS:
            await connections.delete(old.id)
    ids = []
    for owner in OWNERS:
        tokens = sandbox.grants.mint(owner)
        added = await connections.add(
            provider="sandbox", owner=owner, access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"], expires_in=lifetime,
        )  # fmt: skip
        ids.append(added.id)
        if owner == REVOKED:
            sandbox.grants.grants[max(sandbox.grants.grants)].revoked = True
    return ids


async def _seed_automations(automations: Automations, sandbox: Sandbox, ids: list[int]) -> None:
    """The inbox automation and the nightly sync, on the first two connections (replacing
    those of an earlier demo, whose connections are gone)."""
    sandbox.feed.add({"count": 1, "items": [{"subject": "welcome to the demo"}]})
    sandbox.feed.records.extend(
        {"id": n, "name": f"record {n}", "amount": n % 997} for n in range(1, SYNC_RECORDS + 1)
    )
    for earlier in ("demo-inbox", "demo-nightly-sync"):
        with contextlib.suppress(AutomationNotFoundError):
            await automations.delete(earlier)
    await automations.add(
        name="demo-inbox", connection_id=ids[0], trigger="new_email",
        every=timedelta(seconds=10), steps=INBOX_STEPS, start="beginning",
    )  # fmt: skip
    sync = await automations.add(
        name="demo-nightly-sync", connection_id=ids[1], schedule="0 2 * * *", steps=SYNC_STEPS
    )
    await automations.run_now(sync.id)


async def _send_emails(sandbox: Sandbox) -> None:
    subjects = ["server down in eu-west", "lunch on friday?", "invoice 1042", "urgent: renew"]
    for n in itertools.count():
        await asyncio.sleep(EMAIL_EVERY)
        sandbox.feed.add({"items": [{"subject": subjects[n % len(subjects)]}]})


async def _print_automations(
    automations: Automations, sandbox: Sandbox, say: Callable[[str], None]
) -> None:
    seen = 0
    while True:
        await asyncio.sleep(1)
        for event in await automations.events(after_id=seen, limit=1000):
            if event.state not in (EventState.DONE, EventState.DEAD_LETTER):
                break
            seen = event.id
            when = (event.finished_at or event.seen_at).strftime("%H:%M:%S")
            if "copy" in event.outputs:
                copied = event.outputs["copy"]
                say(f"{when} nightly sync: copied {copied['copied']} records "
                    f"in {copied['pages']} pages")  # fmt: skip
            elif event.state is EventState.DONE:
                label = event.outputs.get("classify", {}).get("label")
                hooks = len(sandbox.feed.sinks.get("summaries", []))
                say(f"{when} email {event.key} classified {label}, summary posted "
                    f"(webhook has {hooks})")  # fmt: skip
            else:
                say(f"{when} event {event.id} dead-lettered: {event.error}")


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
