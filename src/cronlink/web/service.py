"""What the HTTP handlers call: the store, the jobs, the secrets, the audit log."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cronlink.audit import AuditEntry
from cronlink.config_models import PricingModel, UsageModel
from cronlink.scheduler import HEARTBEAT, Scheduler, TickReport

REFUSAL_WINDOW = 1.0
SLOW_DOWN_AFTER = 10
"""Refusals of one client in a window before each further one waits `SLOW_DOWN`."""
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
    pricing: PricingModel = field(default_factory=PricingModel)
    _scheduler: Scheduler | None = field(default=None, repr=False)
    _refused: dict[tuple[str, str, str], int] = field(default_factory=dict, repr=False)
    """Refusals in the current window by (client, action, target), beyond the first."""
    _window_ends: float = 0.0

    async def tick(self) -> TickReport:
        """Fire the due schedules once, as a scheduler pass would."""
        now = datetime.now(UTC)
        if self._scheduler is None:
            self._scheduler = Scheduler(self.store, self.app.jobs)
            await self._scheduler.sync(now)
        report = await self._scheduler.tick(now)
        await self.store.heartbeats.beat(HEARTBEAT, now)
        return report

    async def refused(
        self, request: Request, action: str, target: str, outcome: str = "denied"
    ) -> None:
        """Audit a refused call. A flood of them costs one line per client, action and
        target per second (then one line counting the rest), not a write each; and a
        client that keeps failing waits before it hears back."""
        await self._roll_window()
        key = (self.clients.address(request), action, target[:400])
        if key not in self._refused:
            self._refused[key] = 0
            await self.audited(request, "anonymous", action, target, outcome)
            return
        self._refused[key] += 1
        if self._refused[key] >= SLOW_DOWN_AFTER:
            await asyncio.sleep(SLOW_DOWN)

    async def _roll_window(self) -> None:
        now = time.monotonic()
        if now < self._window_ends:
            return
        self._window_ends = now + REFUSAL_WINDOW
        counted, self._refused = self._refused, {}
        for (client, action, target), more in counted.items():
            if more:
                await self.store.audit.append(
                    AuditEntry(
                        at=datetime.now(UTC), actor="anonymous", action=action, target=target,
                        client=client, outcome="denied", detail=f"{more} more refused calls",
                    )
                )  # fmt: skip

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
            at=datetime.now(UTC), actor=actor, action=action, target=target[:400],
            client=client, outcome=outcome, detail=detail,
        )  # fmt: skip
