"""`/dashboard`: server-rendered pages (Jinja2, no script) over the same verbs as the API.

Pages need a session (`dashboard_auth`); actions also need scope `operate` and the form's
CSRF token, and are audited as the API audits them (actor `token:ID`). Left out of the
OpenAPI document: these are pages, not API operations.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations.

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cronlink import control
from cronlink.errors import RunNotFoundError, UnknownJobError
from cronlink.web import dashboard_format
from cronlink.web import dashboard_views as views
from cronlink.web.api_models import MAX_ID, Id, Name
from cronlink.web.dashboard_auth import (
    COOKIE,
    LIFETIME,
    LOGIN_COOKIE,
    PATH,
    Gate,
    LoginFirst,
    Refusal,
    Sessions,
    Viewer,
)

if TYPE_CHECKING:
    from cronlink.records.audit import AuditEntry
    from cronlink.web.service import WebService

STYLESHEET = (Path(__file__).parent / "templates" / "dashboard.css").read_bytes()
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_NONCE_AGE = 3600
Page = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def install(api: FastAPI, service: "WebService") -> None:
    """Add the dashboard's routes to `api`, and its answers to a missing session or a
    refused request (pages, not the API's JSON)."""
    sessions = Sessions.for_service(service.public_url)
    gate = Gate(service, sessions)
    pages = _templates()

    def render(template: str, code: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("now", service.clock.now())
        body = pages.get_template(template).render(**values)
        return HTMLResponse(body, code, headers=HEADERS)

    async def refusal(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refusal)
        answer = render("error.html", error.status, message=error.message, viewer=None)
        if error.retry_after:
            answer.headers["Retry-After"] = error.retry_after
        return answer

    async def login_first(request: Request, error: Exception) -> Response:
        return RedirectResponse(f"{PATH}/login", 303, headers=HEADERS)

    api.add_exception_handler(Refusal, refusal)
    api.add_exception_handler(LoginFirst, login_first)
    api.include_router(_router(service, gate, render))


def _router(service: "WebService", gate: Gate, render: Callable[..., HTMLResponse]) -> APIRouter:
    routes = APIRouter(prefix=PATH, include_in_schema=False)
    Looking = Annotated[Viewer, Depends(gate.viewer)]

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(PATH + path, 303, headers=HEADERS)

    @routes.get("/dashboard.css")
    async def stylesheet() -> Response:
        return Response(STYLESHEET, media_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    @routes.get("/login")
    async def login_page(request: Request) -> Response:
        nonce = secrets.token_urlsafe(32)
        answer = render("login.html", nonce=nonce, viewer=None)
        gate.sessions.set(answer, LOGIN_COOKIE, nonce, LOGIN_NONCE_AGE)
        return answer

    @routes.post("/login")
    async def login(request: Request) -> Response:
        token, secret = await gate.login(request)
        await service.audited(request, token.actor, "dashboard.login", "dashboard", "accepted")
        answer = back("")
        gate.sessions.set(answer, COOKIE, gate.sessions.issue(secret),
                          int(LIFETIME.total_seconds()))  # fmt: skip
        gate.sessions.clear(answer, LOGIN_COOKIE)
        return answer

    @routes.post("/logout")
    async def logout(request: Request) -> Response:
        await gate.poster(request, "dashboard.logout", "dashboard")
        answer = back("/login")
        gate.sessions.clear(answer, COOKIE)
        return answer

    @routes.get("")
    async def overview(viewer: Looking) -> Response:
        values = await views.overview(service, service.clock.now())
        return render("overview.html", viewer=viewer, **values)

    @routes.get("/jobs/{name}")
    async def job(name: Name, viewer: Looking, before_id: Page = None) -> Response:
        try:
            values = await views.job_page(service, name, before_id, service.clock.now())
        except UnknownJobError as error:
            return render("error.html", 404, message=str(error), viewer=viewer)
        return render("job.html", viewer=viewer, **values)

    async def set_paused(request: Request, name: Name, paused: bool) -> Response:
        action = "jobs.pause" if paused else "jobs.resume"
        viewer = await gate.operator(request, action, name)
        service.app.get(name)
        await service.store.set_paused(name, paused, service.clock.now())
        await service.audited(request, viewer.token.actor, action, name, "accepted",
                              "dashboard")  # fmt: skip
        return back(f"/jobs/{name}")

    @routes.post("/jobs/{name}/pause")
    async def pause(request: Request, name: Name) -> Response:
        return await set_paused(request, name, True)

    @routes.post("/jobs/{name}/resume")
    async def resume(request: Request, name: Name) -> Response:
        return await set_paused(request, name, False)

    @routes.post("/jobs/{name}/run")
    async def run_now(request: Request, name: Name) -> Response:
        viewer = await gate.operator(request, "jobs.trigger", name)

        def audit(run_id: int, deduplicated: bool) -> "AuditEntry":
            return service.entry(request, viewer.token.actor, "jobs.trigger", name, "accepted",
                                 f"run {run_id} (dashboard)")  # fmt: skip

        queued = await control.request_run(service.store, service.app, name, None, None,
                                           service.clock.now(), audit)  # fmt: skip
        return back(f"/runs/{queued.run_id}")

    @routes.get("/runs/{run_id}")
    async def run(run_id: Id, viewer: Looking) -> Response:
        try:
            values = await views.run_page(service, run_id)
        except RunNotFoundError as error:
            return render("error.html", 404, message=str(error), viewer=viewer)
        return render("run.html", viewer=viewer, **values)

    @routes.get("/connections")
    async def connections(viewer: Looking, after_id: Page = None) -> Response:
        values = await views.connections_page(service, after_id or 0)
        return render("connections.html", viewer=viewer, **values)

    @routes.get("/automations")
    async def automations(viewer: Looking, after_id: Page = None) -> Response:
        values = await views.automations_page(service, after_id or 0, service.clock.now())
        return render("automations.html", viewer=viewer, **values)

    @routes.get("/usage")
    async def usage(viewer: Looking) -> Response:
        values = await views.usage_page(service, service.clock.now())
        return render("usage.html", viewer=viewer, **values)

    return routes


def _templates() -> Environment:
    pages = Environment(
        loader=PackageLoader("cronlink.web", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    pages.filters.update(dashboard_format.FILTERS)
    pages.globals["PATH"] = PATH
    return pages
