"""What the HTTP handlers call: the store, the jobs, the secrets, the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cronlink.audit import RefusalTally
from cronlink.clock import Clock, SystemClock
from cronlink.config_models import PricingModel, UsageModel
from cronlink.engine.scheduler import HEARTBEAT, Scheduler, TickReport
from cronlink.errors import StoreError
from cronlink.records.audit import AuditEntry

log = logging.getLogger("cronlink.web")

REFUSAL_WINDOW = 1.0
SLOW_DOWN_AFTER = 10
"""Refusals of one client in a window, whatever it asked for, before each further one
waits `SLOW_DOWN`."""
SLOW_DOWN = 0.5

if TYPE_CHECKING:
    from fastapi import Request

    from cronlink.app import App
    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections
    from cronlink.store import Store
    from cronlink.web.limits import Clients, Limiter
    from cronlink.web.secrets import CronSecrets


@dataclass(kw_only=True)
class WebService:
    store: Store
    app: App
    secrets: CronSecrets
    clients: Clients
    per_address: Limiter
    per_credential: Limiter
    require_signature: bool = False
    connections: Connections | None = None
    """None when `[connections]` is not configured."""
    automations: Automations | None = None
    public_url: str | None = None
    """`[serve] public_url`: where browsers reach the service behind a TLS proxy."""
    quotas: UsageModel = field(default_factory=UsageModel)
    """`[usage]`: the free quotas the dashboard's usage page compares against."""
    budgets: dict[str, float | None] = field(default_factory=dict)
    """The chat models' monthly budgets, by name (`[ai.models.NAME] budget_usd`)."""
    pricing: PricingModel = field(default_factory=PricingModel)
    clock: Clock = field(default_factory=SystemClock)
    """What every route takes `now` from (tests hand in their own)."""
    _scheduler: Scheduler | None = field(default=None, repr=False)
    refusals: RefusalTally = field(default_factory=RefusalTally, repr=False)
    _strikes: dict[str, int] = field(default_factory=dict, repr=False)
    """Refusals in the current window by client."""
    _window_ends: float = 0.0
    _summing: asyncio.Task[None] | None = field(default=None, repr=False)

    async def tick(self) -> TickReport:
        """Fire the due schedules once, as a scheduler pass would."""
        now = self.clock.now()
        if self._scheduler is None:
            self._scheduler = Scheduler(self.store, self.app.jobs, self.clock)
            await self._scheduler.sync(now)
        report = await self._scheduler.tick(now)
        await self.store.heartbeats.beat(HEARTBEAT, now)
        return report

    async def refused(
        self, request: Request, action: str, target: str, outcome: str = "denied",
        actor: str = "anonymous",
    ) -> None:  # fmt: skip
        """Audit a refused call. A flood of them costs a line at once and then one line
        per minute per client and action, counting them (`RefusalTally`), whatever targets
        they name; and a client that keeps failing waits before it hears back."""
        client = self.clients.address(request)
        now = time.monotonic()
        at = self.clock.now()
        lines = self.refusals.add(client, action, target[:400], outcome, now, at, actor)
        await self.store.audit.append(*lines)
        if self._summing is None or self._summing.done():
            self._summing = asyncio.create_task(self._sum_up())
        if now >= self._window_ends:
            self._window_ends, self._strikes = now + REFUSAL_WINDOW, {}
        self._strikes[client] = self._strikes.get(client, 0) + 1
        if self._strikes[client] > SLOW_DOWN_AFTER:
            await asyncio.sleep(SLOW_DOWN)

    async def _sum_up(self) -> None:
        """Write the refusals' summaries as their windows end, while any is open."""
        while (ends := self.refusals.next_due()) is not None:
            await asyncio.sleep(max(0.0, ends - time.monotonic()))
            lines = self.refusals.due(time.monotonic(), self.clock.now())
            try:
                await self.store.audit.append(*lines)
            except StoreError as error:
                log.warning("%d summaries of refused calls not written: %s", len(lines), error)

    async def close(self) -> None:
        """Write every refusal still counted (the service is stopping)."""
        if self._summing is not None:
            self._summing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summing
        lines = self.refusals.drain(time.monotonic(), self.clock.now())
        try:
            await self.store.audit.append(*lines)
        except StoreError as error:
            log.warning("%d summaries of refused calls not written: %s", len(lines), error)

    async def audited(
        self,
        request: Request,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        detail: str = "",
    ) -> None:
        await self.store.audit.append(self.entry(request, actor, action, target, outcome, detail))

    def entry(
        self,
        request: Request,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        detail: str = "",
    ) -> AuditEntry:
        client = self.clients.address(request)
        return AuditEntry(
            at=self.clock.now(), actor=actor, action=action, target=target[:400],
            client=client, outcome=outcome, detail=detail,
        )  # fmt: skip
