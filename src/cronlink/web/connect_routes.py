"""`GET /connect/{provider}` and `GET /oauth/callback`: a browser connects its owner's
account at a provider (authorization code with PKCE; see `connections.authorize`).
Every start and callback is audited, refused ones too; no answer holds a token."""

from __future__ import annotations

import logging
from html import escape
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cronlink.connections.authorize import Authorizer, back_to
from cronlink.connections.connect_state import ConnectError, Flow, cookie_name
from cronlink.web import problems
from cronlink.web.limits import retry_after

if TYPE_CHECKING:
    from cronlink.web.service import WebService

log = logging.getLogger("cronlink.web")
CALLBACK = "oauth_callback"
STATUS = {"unknown_provider": 404, "provider_error": 502, "provider_unavailable": 502,
          "provider_misconfigured": 503}  # fmt: skip
"""HTTP status by `ConnectError.reason`; the others are the request's fault (400)."""
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
NOT_CONFIGURED = (
    "connections are not configured on this server: add a [connections] section to "
    "cronlink.toml and set CRONLINK_SECRET_KEY"
)

Param = Annotated[str | None, Query(max_length=4096)]


def router(service: WebService) -> APIRouter:
    routes = APIRouter()
    authorizer = None if service.connections is None else Authorizer(service.connections)

    @routes.get(
        "/connect/{provider}", status_code=303,
        responses={303: {"description": "To the provider's authorize URL"},
                   **problems.answers(400, 404, 429, 503)},
    )  # fmt: skip
    async def connect(
        provider: Annotated[str, Path(max_length=100)], request: Request,
        owner: Param = None, scopes: Param = None, return_to: Param = None, name: Param = None,
    ) -> Response:  # fmt: skip
        """Send the browser to `provider`, where `owner` grants access to an account;
        `scopes` (default: the provider's), `return_to`, a path here to come back to, and
        `name`, the new connection's name."""
        ready = await _ready(service, request, authorizer, "connect.start", provider)
        if isinstance(ready, Response):
            return ready
        callback = str(request.url_for(CALLBACK))
        if service.public_url is not None:  # behind a proxy: the address browsers know
            callback = service.public_url + urlsplit(callback).path
        try:
            started = ready.start(
                provider, owner=owner, scopes=scopes, return_to=return_to, redirect_uri=callback,
                name=name,
            )  # fmt: skip
        except ConnectError as error:
            await service.refused(request, "connect.start", provider, error.reason)
            return _failed(request, error, service)
        flow = started.flow
        await service.audited(request, "anonymous", "connect.start", provider, "redirected",
                              f"owner {flow.owner}, scopes {flow.scopes or '-'}")  # fmt: skip
        answer = RedirectResponse(started.url, 303, headers=PRIVATE)
        answer.set_cookie(
            started.cookie, flow.nonce, max_age=started.max_age, path=urlsplit(callback).path,
            secure=callback.startswith("https:"), httponly=True, samesite="lax",
        )  # fmt: skip
        return answer

    @routes.get(
        "/oauth/callback", name=CALLBACK,
        responses={303: {"description": "Back to `return_to`"},
                   **problems.answers(400, 429, 502, 503)},
    )  # fmt: skip
    async def callback(
        request: Request, state: Param = None, code: Param = None, error: Param = None,
        error_description: Param = None,
    ) -> Response:  # fmt: skip
        """Where the provider sends the browser back: the connection it granted is stored."""
        ready = await _ready(service, request, authorizer, "connect.callback", "state")
        if isinstance(ready, Response):
            return ready
        try:
            flow = ready.resume(state, request.cookies)
        except ConnectError as refused:
            await service.refused(request, "connect.callback", "state", refused.detail)
            return _failed(request, refused, service)
        try:
            made = await ready.finish(flow, code=code, error=error, description=error_description)
        except ConnectError as failed:
            await service.audited(request, flow.owner, "connect.callback", flow.provider,
                                  failed.reason, failed.detail)  # fmt: skip
            back = back_to(flow, error=failed.reason, provider=flow.provider)
            return _spent(request, flow, _failed(request, failed, service, back))
        await service.audited(request, flow.owner, "connect.callback", flow.provider,
                              "connected", f"connection {made.id}")  # fmt: skip
        body = {"connection_id": made.id, "provider": made.provider, "owner": made.owner}
        back = back_to(flow, connection_id=str(made.id), provider=made.provider)
        return _spent(request, flow, _answer(request, 200, body, back))

    return routes


async def _ready(
    service: WebService, request: Request, authorizer: Authorizer | None, action: str,
    target: str,
) -> Authorizer | Response:  # fmt: skip
    """The authorizer to go on with; or 503 without `[connections]`, 429 over the
    address's rate."""
    if authorizer is None:
        await service.refused(request, action, target, "unavailable")
        return JSONResponse({"error": "not_configured", "detail": NOT_CONFIGURED}, 503)
    wait = await service.per_address.wait(service.clients.address(request))
    if wait > 0:
        await service.refused(request, action, target, "limited")
        return JSONResponse(
            {"error": "rate_limited"}, 429, headers={"Retry-After": retry_after(wait)}
        )
    return authorizer


def _failed(
    request: Request, error: ConnectError, service: WebService, back: str | None = None
) -> Response:
    if error.reason == "provider_misconfigured":
        log.warning("connect flow: %s", error.detail)
    body: dict[str, Any] = {"error": error.reason, "detail": str(error)}
    if error.reason == "unknown_provider" and service.connections is not None:
        body["known"] = service.connections.providers.names()
    return _answer(request, STATUS.get(error.reason, 400), body, back)


def _answer(request: Request, status: int, body: dict[str, Any], back: str | None) -> Response:
    """A redirect to `back`, else a small page for a browser or JSON for anything else."""
    if back is not None:
        return RedirectResponse(back, 303, headers=PRIVATE)
    if "text/html" not in request.headers.get("Accept", ""):
        return JSONResponse(body, status, headers=PRIVATE)
    if "connection_id" in body:
        title = "Connected"
        text = f"{body['provider']} is connected for {body['owner']} ({body['connection_id']})."
    else:
        title, text = "Not connected", str(body["detail"])
    page = f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>"
    return HTMLResponse(f"{page}<p>{escape(text)}</p>", status, headers=PRIVATE)


def _spent(request: Request, flow: Flow, answer: Response) -> Response:
    """The answer, with the browser's cookie for the flow gone: its state is used up."""
    answer.delete_cookie(cookie_name(flow.nonce), path=request.url.path, httponly=True,
                         samesite="lax")  # fmt: skip
    return answer
