"""`/api/v1/audit` (admin) and `/api/v1/usage` (read)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# the scope dependencies are local to `router`.

import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query

from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.web.api_auth import caller
from cronlink.web.api_models import AuditLine, AuditPage, Before, Instant, JobUsage, UsageReport

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def router(service: "WebService") -> APIRouter:
    routes = APIRouter(prefix="/api/v1", tags=["audit and usage"])
    Reader = Annotated[ApiToken, Depends(caller(service, Scope.READ))]
    Admin = Annotated[ApiToken, Depends(caller(service, Scope.ADMIN))]

    @routes.get("/audit")
    async def audit(
        token: Admin,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        action: Annotated[str | None, Query(max_length=100)] = None,
        since: Instant | None = None,
        before_id: Before = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AuditPage:
        """The audit log, newest first, a page at a time."""
        found = await service.store.audit.find(  # one more: is there a next page?
            actor=actor, action=action, since=since, before_id=before_id, limit=limit + 1
        )
        lines = [AuditLine(**dataclasses.asdict(e)) for e in found[:limit]]
        older = lines[-1].id if len(found) > limit else None
        return AuditPage(entries=lines, next_before_id=older)

    @routes.get("/usage")
    async def usage(
        token: Reader, hours: Annotated[int, Query(ge=1, le=24 * 366)] = 24
    ) -> UsageReport:
        """Runs per job and tier over the last `hours`: how they ended, and their time."""
        since = service.clock.now() - timedelta(hours=hours)
        found = await service.store.usage(since)
        jobs = [JobUsage(job=u.job, tier=u.tier.value, runs=u.runs, by_state=u.by_state,
                         run_seconds=round(u.run_seconds, 3)) for u in found]  # fmt: skip
        return UsageReport(since=since, jobs=jobs)

    return routes
