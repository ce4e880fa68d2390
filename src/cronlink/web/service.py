"""What the HTTP handlers call: the store, the jobs, the secrets, the audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cronlink.audit import AuditEntry
from cronlink.scheduler import Scheduler, TickReport

if TYPE_CHECKING:
    from fastapi import Request

    from cronlink.app import App
    from cronlink.store import Store
    from cronlink.web.secrets import CronSecrets


@dataclass(kw_only=True)
class WebService:
    store: Store
    app: App
    secrets: CronSecrets
    _scheduler: Scheduler | None = field(default=None, repr=False)

    async def tick(self) -> TickReport:
        """Fire the due schedules once, as a scheduler pass would."""
        now = datetime.now(UTC)
        if self._scheduler is None:
            self._scheduler = Scheduler(self.store, self.app.jobs)
            await self._scheduler.sync(now)
        return await self._scheduler.tick(now)

    async def audited(
        self,
        request: Request,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        detail: str = "",
    ) -> None:
        client = request.client.host if request.client else "unknown"
        await self.store.audit.append(
            AuditEntry(
                at=datetime.now(UTC), actor=actor, action=action, target=target[:400],
                client=client, outcome=outcome, detail=detail,
            )
        )  # fmt: skip
