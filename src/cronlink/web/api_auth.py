"""Who is calling the admin API, and may they: an API token's bearer, its scope, and
the rate limits. Every refusal looks the same whatever its cause (no token, a malformed
one, an unknown, expired or revoked one): 401 `{"error": "unauthorized"}`; a good token
short of the scope gets 403 `{"error": "forbidden"}`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import Request

from cronlink.records.api_tokens import PREFIX, ApiToken, Scope, digest
from cronlink.web.limits import retry_after

if TYPE_CHECKING:
    from cronlink.web.service import WebService

TOUCH_EVERY = 60.0
"""Seconds between two writes of a token's last use (not a write per call)."""


class Refused(Exception):
    """Answer with `status` and `{"error": error}` (handled in `app.build`)."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers or {}


UNAUTHORIZED = Refused(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="cronlink"'})


def caller(service: WebService, scope: Scope) -> Callable[[Request], Awaitable[ApiToken]]:
    """A FastAPI dependency: the token of a caller allowed `scope`, or a refusal."""
    touched: dict[int, float] = {}

    async def check(request: Request) -> ApiToken:
        action = f"{request.method} {request.url.path}"
        wait = await service.per_address.wait(service.clients.address(request))
        if wait > 0:
            await service.refused(request, "api", action, "limited")
            raise Refused(429, "rate_limited", {"Retry-After": retry_after(wait)})
        token = await _token(service, request.headers.get("Authorization"))
        if token is None:
            await service.refused(request, "api", action)
            raise UNAUTHORIZED
        if token.scope < scope:
            needs = f"needs scope {scope.label}, has {token.scope.label}"
            await service.audited(request, token.actor, "api", action, "forbidden", needs)
            raise Refused(403, "forbidden")
        wait = await service.per_credential.wait(token.actor)
        if wait > 0:
            await service.refused(request, "api", action, "limited", token.actor)
            raise Refused(429, "rate_limited", {"Retry-After": retry_after(wait)})
        now = time.monotonic()
        if now - touched.get(token.id, -TOUCH_EVERY) >= TOUCH_EVERY:
            touched[token.id] = now
            await service.store.tokens.touch(token.id, service.clock.now())
        return token

    return check


async def _token(service: WebService, authorization: str | None) -> ApiToken | None:
    if authorization is None:
        return None
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return await token_of(service, secret.strip())


async def token_of(service: WebService, secret: str) -> ApiToken | None:
    """The valid (known, unexpired, unrevoked) API token whose secret is `secret`."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    # Looked up by digest: equal digests come only from the token itself, and the index
    # lookup's timing says nothing about a SHA-256 preimage.
    token = await service.store.tokens.by_digest(digest(secret))
    if token is None or not token.valid_at(service.clock.now()):
        return None
    return token
