"""`/api/v1/jobs` and `/api/v1/runs`: see jobs and runs (read), pause, resume, trigger
and cancel (operate)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# the scope dependencies (`Reader`, `Operator`) are local to `router`.

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from cronlink import control
from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.records.runs import RunState
from cronlink.store import RunFilter
from cronlink.web.api_auth import caller
from cronlink.web.api_models import (
    Before,
    Id,
    Instant,
    Job,
    LogLine,
    Name,
    NewSchedules,
    Queued,
    RunDetail,
    RunOut,
    RunPage,
    TriggerBody,
)

if TYPE_CHECKING:
    from cronlink.records.audit import AuditEntry
    from cronlink.web.service import WebService


def router(service: "WebService") -> APIRouter:
    routes = APIRouter(prefix="/api/v1", tags=["jobs and runs"])
    Reader = Annotated[ApiToken, Depends(caller(service, Scope.READ))]
    Operator = Annotated[ApiToken, Depends(caller(service, Scope.OPERATE))]
    Admin = Annotated[ApiToken, Depends(caller(service, Scope.ADMIN))]

    async def job(name: Name) -> Job:
        service.app.get(name)  # UnknownJobError: 404 with close names
        statuses = await control.job_statuses(service.store, service.app, service.clock.now())
        return next(Job.model_validate(s, from_attributes=True) for s in statuses
                    if s.name == name)  # fmt: skip

    @routes.get("/jobs")
    async def list_jobs(token: Reader) -> list[Job]:
        statuses = await control.job_statuses(service.store, service.app, service.clock.now())
        return [Job.model_validate(s, from_attributes=True) for s in statuses]

    @routes.get("/jobs/{name}")
    async def get_job(name: Name, token: Reader) -> Job:
        return await job(name)

    async def set_paused(name: Name, paused: bool, token: ApiToken, request: Request) -> Job:
        service.app.get(name)
        await service.store.set_paused(name, paused, service.clock.now())
        action = "jobs.pause" if paused else "jobs.resume"
        await service.audited(request, token.actor, action, name, "accepted")
        return await job(name)

    @routes.post("/jobs/{name}/pause")
    async def pause_job(name: Name, token: Operator, request: Request) -> Job:
        """Pause the job's schedules (their instants are recorded as skipped)."""
        return await set_paused(name, True, token, request)

    @routes.post("/jobs/{name}/resume")
    async def resume_job(name: Name, token: Operator, request: Request) -> Job:
        return await set_paused(name, False, token, request)

    @routes.put("/jobs/{name}/schedules")
    async def change_schedules(
        name: Name, body: NewSchedules, token: Admin, request: Request
    ) -> Job:
        """Replace the job's schedules in every scheduler, until cleared (DELETE). Those it
        keeps keep their place; new ones start now."""
        pairs = [(s.cron, s.timezone) for s in body.schedules]
        await control.set_schedules(service.store, service.app, name, pairs, service.clock.now())
        shown = "; ".join(f"{cron} ({zone})" for cron, zone in pairs)
        await service.audited(request, token.actor, "jobs.schedules", name, "accepted", shown)
        return await job(name)

    @routes.delete("/jobs/{name}/schedules")
    async def clear_schedules(name: Name, token: Admin, request: Request) -> Job:
        """Back to the job's configured schedules."""
        await control.set_schedules(service.store, service.app, name, None, service.clock.now())
        await service.audited(request, token.actor, "jobs.schedules", name, "accepted",
                              "back to the configured schedules")  # fmt: skip
        return await job(name)

    @routes.post("/jobs/{name}/trigger", status_code=202)
    async def trigger_job(
        name: Name,
        token: Operator,
        request: Request,
        body: TriggerBody | None = None,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Queued:
        """Queue a run now. The same `Idempotency-Key` twice gives the same run."""

        def audit(run_id: Id, deduplicated: bool) -> "AuditEntry":
            outcome = "deduplicated" if deduplicated else "accepted"
            return service.entry(request, token.actor, "jobs.trigger", name, outcome,
                                 f"run {run_id}")  # fmt: skip

        key = None if idempotency_key is None else f"key:{idempotency_key}"
        queued = await control.request_run(
            service.store, service.app, name, key, None, service.clock.now(), audit,
            payload=None if body is None else body.payload,
        )  # fmt: skip
        return Queued(run_id=queued.run_id, deduplicated=queued.deduplicated)

    @routes.get("/runs")
    async def list_runs(
        token: Reader,
        job: Annotated[str | None, Query(max_length=200)] = None,
        state: RunState | None = None,
        since: Instant | None = None,
        before_id: Before = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> RunPage:
        """Runs, newest first, a page at a time."""
        found = await service.store.list_runs(  # one more: is there a next page?
            RunFilter(job=job, state=state, since=since, limit=limit + 1, before_id=before_id)
        )
        page = found[:limit]
        older = page[-1].id if len(found) > limit else None
        return RunPage(runs=[RunOut.of(r) for r in page], next_before_id=older)

    @routes.get("/runs/{run_id}")
    async def get_run(run_id: Id, token: Reader) -> RunDetail:
        run = await service.store.get_run(run_id)
        lines = await service.store.run_logs(run_id)
        logs = [LogLine(at=at, attempt=attempt, level=level, message=message)
                for at, attempt, level, message in lines]  # fmt: skip
        return RunDetail(**RunOut.of(run).model_dump(), logs=logs)

    @routes.post("/runs/{run_id}/cancel")
    async def cancel_run(run_id: Id, token: Operator, request: Request) -> RunOut:
        """Cancel a queued run at once, or ask a running one's worker to stop it."""
        run = await service.store.request_cancel(run_id, service.clock.now())
        await service.audited(request, token.actor, "runs.cancel", str(run_id), "accepted",
                              f"now {run.state.value}")  # fmt: skip
        return RunOut.of(run)

    return routes
