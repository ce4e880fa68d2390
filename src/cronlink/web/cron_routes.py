"""`POST /cron/{job}` and `POST /cron/tick`: how a cloud scheduler, or any cron that can
only call a URL, drives cronlink. Every call is audited, refused ones too."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cronlink import control, signatures
from cronlink.clock import utc_instant
from cronlink.errors import UnknownJobError
from cronlink.observe import tracing
from cronlink.records.runs import Tier, alive_role
from cronlink.storable import json_flaw
from cronlink.web import problems
from cronlink.web.api_models import CronRun, Name, Tick
from cronlink.web.guards import too_deep
from cronlink.web.health_routes import FRESH
from cronlink.web.limits import retry_after

if TYPE_CHECKING:
    from cronlink.records.audit import AuditEntry
    from cronlink.web.service import WebService

SCHEDULE_HEADERS = ("X-CloudScheduler-ScheduleTime", "X-Cronlink-Scheduled-Time")
WAIT_LIMIT = 25.0
"""Seconds `?wait=true` holds a light run's caller before answering 202 anyway."""


def router(service: WebService) -> APIRouter:
    routes = APIRouter(tags=["cron"], responses=problems.answers(401, 429))

    @routes.post("/cron/tick", status_code=200, response_model=Tick)
    async def tick(request: Request) -> JSONResponse:
        """Fire every schedule that is due now (a cron that can only call a URL, every
        minute, drives cronlink with no scheduler process)."""
        denied = await _deny(service, request, "cron.tick", "schedules")
        if denied is not None:
            return denied
        report = await service.tick()
        await service.audited(request, "cron-secret", "cron.tick", "schedules", "accepted",
                              f"{report.started} runs started, {report.missed} missed")  # fmt: skip
        return JSONResponse({"started": report.started, "missed": report.missed})

    @routes.post(
        "/cron/{job}", status_code=202, response_model=CronRun,
        responses={200: {"model": CronRun, "description": "The light run finished (?wait=true)"},
                   **problems.answers(400, 404)},
    )  # fmt: skip
    async def run(job: Name, request: Request, wait: bool = False) -> JSONResponse:
        """Queue a run of `job` and answer 202 with its id at once (`?wait=true`: wait for a
        light run to finish, up to 25 s). The same schedule-time header or
        `Idempotency-Key` twice gives the same run. A body is the run's payload
        (`ctx.payload`): JSON, or text when it is not JSON and not sent as JSON. A W3C
        `traceparent` header makes the run's attempts part of the caller's trace."""
        denied = await _deny(service, request, "cron.run", job)
        if denied is not None:
            return denied
        try:
            key, scheduled_for = _idempotency(request)
            payload = _payload(await request.body(), request.headers.get("content-type", ""))
        except ValueError as error:
            await service.audited(request, "cron-secret", "cron.run", job, "invalid", str(error))
            return JSONResponse({"error": "invalid_request", "detail": str(error)}, 400)

        def audit(run_id: int, deduplicated: bool) -> AuditEntry:
            outcome = "deduplicated" if deduplicated else "accepted"
            return service.entry(request, "cron-secret", "cron.run", job, outcome, f"run {run_id}")

        try:
            queued = await control.request_run(
                service.store,
                service.app,
                job,
                key,
                scheduled_for,
                service.clock.now(),
                audit,
                payload=payload,
                traceparent=tracing.accepted(request.headers.get("traceparent")),
            )
        except UnknownJobError as error:
            await service.audited(request, "cron-secret", "cron.run", job, "not_found")
            return JSONResponse(
                {"error": "unknown_job", "detail": str(error), "suggestions": error.suggestions},
                404,
            )
        body: dict[str, Any] = {"run_id": queued.run_id, "deduplicated": queued.deduplicated}
        if wait and queued.light and not await _light_worker_seen(service):
            body["detail"] = (
                "no light worker has run in the last two minutes: the run waits in the queue "
                "for `cronlink run` or `cronlink worker --tier light`"
            )
        elif wait and queued.light:
            finished = await control.wait_up_to(service.store, queued.run_id, WAIT_LIMIT)
            if finished is not None:
                body |= {"state": finished.state.value, "result": finished.result}
                return JSONResponse(body, 200)
        return JSONResponse(body | {"state": "queued"}, 202)

    return routes


async def _deny(
    service: WebService, request: Request, action: str, target: str
) -> JSONResponse | None:
    """429 when the client address, then the credential, is over its rate; 401 for a
    missing, malformed or wrong secret, and when none is configured: one shape for all,
    so a caller learns nothing about which it was; then 401 `invalid_signature` saying
    what is wrong with the signature. None: go on."""
    wait = await service.per_address.wait(service.clients.address(request))
    if wait > 0:
        await service.refused(request, action, target, "limited")
        return _too_many(wait)
    if not service.secrets.accepts(request.headers.get("Authorization")):
        await service.refused(request, action, target)
        return JSONResponse(
            {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": 'Bearer realm="cronlink"'}
        )
    problem = await _signature_problem(service, request)
    if problem is not None:
        # The caller holds the bearer: what is wrong with its signature is worth saying.
        await service.refused(request, action, target, "bad_signature")
        return JSONResponse({"error": "invalid_signature", "detail": problem}, 401)
    wait = await service.per_credential.wait("cron-secret")
    if wait > 0:
        await service.refused(request, action, target, "limited", "cron-secret")
        return _too_many(wait)
    return None


async def _signature_problem(service: WebService, request: Request) -> str | None:
    """A signature, when sent (or required by `[serve] require_signature`), must be good,
    fresh and not seen before, by this process or any other on the database."""
    header = request.headers.get(signatures.HEADER)
    if header is None:
        return f"{signatures.HEADER} is required" if service.require_signature else None
    signed = signatures.Request(
        method=request.method, path=_raw_path(request),
        query=request.scope.get("query_string", b"").decode("latin-1"),
        body=await request.body(),
    )  # fmt: skip
    problem = service.secrets.verifier.problem(header, signed)
    if problem is not None:
        return problem
    now = service.clock.now()
    window = timedelta(seconds=signatures.WINDOW)
    spent = signatures.parse(header).digest
    if not await service.store.signatures.spend(spent, now, now + window):
        return f"{signatures.HEADER} was already used"
    return None


def _raw_path(request: Request) -> str:
    """The path as the caller sent it, percent-encoding and all (what it signed)."""
    raw = request.scope.get("raw_path")
    if raw:
        return bytes(raw).decode("latin-1").partition("?")[0]
    return quote(request.scope["path"])


async def _light_worker_seen(service: WebService) -> bool:
    last = await service.store.heartbeats.last(alive_role(Tier.LIGHT))
    return last is not None and service.clock.now() - last <= FRESH


MAX_DEPTH = 32
"""As the guards' limit on JSON bodies, for a body sent without a JSON content type."""


def _payload(body: bytes, content_type: str) -> Any:
    """The run's payload from a request's body: None when empty; JSON when it parses (it
    must, sent as JSON; `curl -d` sends it as a form); else its text. `ValueError` saying
    what is wrong."""
    if not body.strip():
        return None
    sent_as_json = "json" in content_type.lower()
    try:
        if not sent_as_json and too_deep(body, MAX_DEPTH):
            raise ValueError(f"the body's JSON nests deeper than {MAX_DEPTH}")
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise ValueError("the body is neither JSON nor UTF-8 text") from None
    except json.JSONDecodeError as error:
        if sent_as_json:
            raise ValueError(f"the body is not valid JSON ({error})") from None
        try:
            payload = body.decode()
        except UnicodeDecodeError:
            raise ValueError("the body is neither JSON nor UTF-8 text") from None
    problem = json_flaw(payload, "the body")
    if problem is not None:
        raise ValueError(f"the payload cannot be stored: {problem}")
    return payload


def _too_many(wait: float) -> JSONResponse:
    return JSONResponse({"error": "rate_limited"}, 429, headers={"Retry-After": retry_after(wait)})


def _idempotency(request: Request) -> tuple[str | None, datetime | None]:
    """The run's dedupe key and scheduled instant from the caller's headers."""
    for header in SCHEDULE_HEADERS:
        value = request.headers.get(header)
        if value is not None:
            try:
                at = utc_instant(value)
            except ValueError as error:
                raise ValueError(f"{header}: {value[:80]!r} {error}") from None
            return f"scheduled:{at.isoformat()}", at
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 200:
            raise ValueError("Idempotency-Key must be 1-200 characters")
        return f"key:{key}", None
    return None, None
