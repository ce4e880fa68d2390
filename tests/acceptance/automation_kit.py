"""Automations wired to a running sandbox provider whose triggers read short pages (10
items, 3 pages a poll), so bursts, page boundaries and resumes are cheap to reach."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from cronlink.automations.service import Automations
from cronlink.builtin_jobs import connection_jobs
from cronlink.config_models import ConnectionsModel
from cronlink.connections.crypto import Vault
from cronlink.connections.providers import SHIPPED, Providers
from cronlink.connections.service import Connections
from cronlink.engine.worker import Worker
from cronlink.records.automations import AutomationEvent, EventState
from cronlink.records.runs import Tier
from cronlink.store.schema import automation_events, runs
from tests.acceptance.sandbox_kit import Kit
from tests.acceptance.worker_kit import running_worker, wait_until

PAGE, PAGES = 10, 3
STEPS = [{"name": "noop", "call": "tests.acceptance.automation_steps:remember"}]


EXTRA_TRIGGERS = """
[triggers.new_email_by_page]
description = "the timestamp feed again, by page number"
path = "/api/feed/timestamp"
query = { since = "{cursor}", limit = "{page_size}" }
items = "items"
cursor = "timestamp"
cursor_field = "created_at"
lookback = "2m"
pagination = { kind = "page", param = "page" }

[triggers.google_sync_keeping_query]
description = "the Google-shaped feed, wrongly repeating its syncToken on later pages"
path = "/api/feed/sync"
query = { syncToken = "{cursor}", maxResults = "{page_size}" }
items = "items"
cursor = "token"
delta_field = "nextSyncToken"
pagination = { kind = "token", field = "nextPageToken", param = "pageToken" }
"""


def short_pages(folder: Path) -> Path:
    """The shipped sandbox provider with short pages, plus a trigger paged by number and
    one that keeps its query where the feed refuses it."""
    text = (SHIPPED / "sandbox.toml").read_text() + EXTRA_TRIGGERS
    text = re.sub(r"(\[triggers\.\w+\]\n)", rf"\1page_size = {PAGE}\nmax_pages = {PAGES}\n", text)
    (folder / "sandbox.toml").write_text(text)
    return folder


@dataclass
class AutoKit:
    kit: Kit
    automations: Automations
    trace: Path
    """Where the test steps leave their traces (the automations' `trace` parameter)."""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        """The kit's time, which the connections (their accounts' pauses) follow too."""
        return self.at

    def use(self, session: aiohttp.ClientSession) -> None:
        """Rebuild the kit's connections and automations over `session` (one with a
        resolver of the test's own, say)."""
        self.kit.connections = _connections(self.kit, self.kit.connections.providers, session)
        self.automations = _automations(self.kit.connections, session)

    async def feed(self, **asked: Any) -> list[dict[str, Any]]:
        async with self.kit.session.post(f"{self.kit.sandbox.url}/sandbox/feed", json=asked) as r:
            return list((await r.json())["added"])

    async def expire(self) -> None:
        async with self.kit.session.post(f"{self.kit.sandbox.url}/sandbox/feed/expire") as r:
            assert r.status == 200

    async def poll(self, step: timedelta = timedelta(minutes=2)) -> Any:
        """Move the kit's time on by `step` (enough for every automation to be due once
        more) and poll what is due then."""
        # Never behind the real time: an automation added with the system's clock is due
        # from the moment it was added, however long the machine took to get here.
        self.at = max(self.at + step, datetime.now(UTC))
        return await self.automations.poll_due(self.at)

    async def ledger(self, automation_id: int) -> list[str]:
        """Event keys of the automation, checking each that fired has a run."""

        def read(c: Any) -> list[str]:
            rows = c.execute(
                select(automation_events.c.key, automation_events.c.run_id)
                .where(automation_events.c.automation_id == automation_id)
                .order_by(automation_events.c.id)
            ).all()
            fired = select(automation_events.c.state).where(
                automation_events.c.automation_id == automation_id,
                automation_events.c.state != "baseline",
                automation_events.c.run_id.is_(None),
            )
            assert c.execute(fired).first() is None
            return [r.key for r in rows]

        return await self.automations.store.transact(read, write=False)

    async def runs_of_events(self) -> int:
        """The runs events point at: with `run_count`, no run was started for nothing."""
        return await self.automations.store.transact(
            lambda c: c.execute(
                select(func.count(func.distinct(automation_events.c.run_id)))
            ).scalar_one(),
            write=False,
        )

    async def run_count(self) -> int:
        return await self.automations.store.transact(
            lambda c: c.execute(
                select(func.count()).where(runs.c.job == "process-automation")
            ).scalar_one(),
            write=False,
        )


BUILTIN = {job.name: job for job in connection_jobs(ConnectionsModel())}


@pytest.fixture
async def auto(kit: Kit, tmp_path: Path) -> AutoKit:
    trace = tmp_path / "trace"
    trace.mkdir()
    kit.connections = _connections(kit, Providers.load(short_pages(tmp_path)), kit.session)
    made = AutoKit(kit, _automations(kit.connections, kit.session), trace=trace)
    kit.clock.source = made
    return made


def _connections(kit: Kit, providers: Providers, session: aiohttp.ClientSession) -> Connections:
    return Connections(
        kit.connections.store, Vault.from_text(kit.key), providers, session,
        refresh_job=BUILTIN["refresh-connection"], clock=kit.clock,
    )  # fmt: skip


def _automations(connections: Connections, session: aiohttp.ClientSession) -> Automations:
    return Automations(
        connections.store, connections.providers, session, connections,
        process_job=BUILTIN["process-automation"],
    )  # fmt: skip


@asynccontextmanager
async def heavy_worker(auto: AutoKit, **options: Any) -> AsyncIterator[Worker]:
    """A heavy worker running the built-in automation jobs."""
    async with running_worker(
        auto.automations.store, Tier.HEAVY, BUILTIN, connections=auto.kit.connections,
        automations=auto.automations, **options,
    ) as worker:  # fmt: skip
        yield worker


async def dead_letter(auto: AutoKit, automation_id: int) -> AutomationEvent:
    """One new event of the automation, polled and run on a heavy worker until it is
    dead-lettered (its last step fails for good)."""
    await auto.feed(count=1)
    await auto.poll(timedelta(0))
    async with heavy_worker(auto):

        async def settled() -> bool:
            events = await auto.automations.events(automation_id)
            return bool(events) and events[0].state is EventState.DEAD_LETTER

        await wait_until(settled, within=60)
    [event] = await auto.automations.events(automation_id)
    return event
