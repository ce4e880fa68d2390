"""Who is looking at the dashboard, and may they act.

A login exchanges an API token for a session cookie: a Fernet token (encrypted and signed)
holding the API token's SHA-256 and the session's CSRF token, good for `LIFETIME`. The
API token itself is never kept, in the cookie or anywhere else. Every request looks the
digest up in the store again, so a revoked or expired token ends its sessions at once and
a changed scope applies at once. The cookie is HttpOnly, SameSite=Strict, and Secure when
`[serve] public_url` is https. Its key is derived (HKDF) from CRONLINK_SECRET_KEY, so
sessions survive restarts and work across replicas; without that variable a random key
per process is used instead (sessions end with the process).

Every POST carries the session's CSRF token in its form, compared in constant time. The
login form, made before there is a session, carries a nonce that must match a cookie of
its own (a cross-site page can neither read nor send that SameSite=Strict cookie).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from fastapi import Request

from cronlink.connections import SECRET_KEY_ENV
from cronlink.connections.crypto import Vault
from cronlink.records.api_tokens import ApiToken, Scope, digest
from cronlink.web.api_auth import token_of
from cronlink.web.limits import Limiter

if TYPE_CHECKING:
    from fastapi import Response

    from cronlink.web.service import WebService

log = logging.getLogger("cronlink.web")

COOKIE = "cronlink_session"
LOGIN_COOKIE = "cronlink_login"
PATH = "/dashboard"
PURPOSE = "cronlink dashboard session"
LIFETIME = timedelta(hours=12)
LOGIN_RATE = 0.2
"""Login attempts per second and address, after a burst of `LOGIN_BURST`: a token has
256 random bits, so this guards the service's time rather than the tokens."""
LOGIN_BURST = 10
MAX_FORM = 4096


class LoginFirst(Exception):
    """No valid session: go to the login page."""


class Refusal(Exception):
    """Answer with an error page: `status` and a message naming no cause a prober could use."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True, slots=True)
class Viewer:
    token: ApiToken
    csrf: str

    @property
    def may_operate(self) -> bool:
        return self.token.scope >= Scope.OPERATE


class Sessions:
    def __init__(self, fernet: MultiFernet, *, secure: bool) -> None:
        self._fernet = fernet
        self.secure = secure

    @classmethod
    def for_service(cls, public_url: str | None) -> Sessions:
        text = os.environ.get(SECRET_KEY_ENV, "").strip()
        if text:
            fernet = Vault.from_text(text).derived(PURPOSE)
        else:
            log.warning(
                "%s is not set: dashboard sessions use a key of this process and end with it",
                SECRET_KEY_ENV,
            )
            fernet = MultiFernet([Fernet(Fernet.generate_key())])
        return cls(fernet, secure=(public_url or "").lower().startswith("https://"))

    def issue(self, secret: str) -> str:
        """A session cookie for the holder of API token `secret`."""
        plain = {"d": digest(secret), "c": secrets.token_urlsafe(32)}
        return self._fernet.encrypt(json.dumps(plain).encode()).decode()

    def open(self, cookie: str | None) -> tuple[str, str] | None:
        """(token digest, CSRF token) of a good, unexpired cookie; None for anything else."""
        if not cookie or len(cookie) > 1000:
            return None
        try:
            ttl = int(LIFETIME.total_seconds())
            plain = json.loads(self._fernet.decrypt(cookie.encode(), ttl=ttl))
            return str(plain["d"]), str(plain["c"])
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=PATH, secure=self.secure, httponly=True,
            samesite="strict",
        )  # fmt: skip

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=PATH, secure=self.secure, httponly=True,
                               samesite="strict")  # fmt: skip


class Gate:
    """The checks in front of every page and action."""

    def __init__(self, service: WebService, sessions: Sessions) -> None:
        self.service = service
        self.sessions = sessions
        self.logins = Limiter(LOGIN_RATE, LOGIN_BURST, service.store, "login")

    async def viewer(self, request: Request) -> Viewer:
        """The viewer of a valid session, or `LoginFirst` (a FastAPI dependency: `Request`
        is imported at run time for it)."""
        opened = self.sessions.open(request.cookies.get(COOKIE))
        if opened is None:
            raise LoginFirst
        token = await self.service.store.tokens.by_digest(opened[0])
        if token is None or not token.valid_at(self.service.clock.now()):
            raise LoginFirst
        wait = await self.service.per_credential.wait(token.actor)
        if wait > 0:
            raise Refusal(429, "Too many requests: wait a moment.", f"{max(1, round(wait))}")
        return Viewer(token=token, csrf=opened[1])

    async def poster(self, request: Request, action: str, target: str) -> Viewer:
        """The viewer, if the form's CSRF token is the session's (a refusal is audited)."""
        viewer = await self.viewer(request)
        sent = (await form(request)).get("csrf", "")
        if not hmac.compare_digest(sent.encode(), viewer.csrf.encode()):
            await self.service.audited(request, viewer.token.actor, action, target, "denied",
                                       "dashboard: missing or wrong CSRF token")  # fmt: skip
            raise Refusal(403, "This form has expired: reload the page and try again.")
        return viewer

    async def operator(self, request: Request, action: str, target: str) -> Viewer:
        """The viewer, if the form is good and the token may operate; refusals are audited."""
        viewer = await self.poster(request, action, target)
        if not viewer.may_operate:
            needs = f"dashboard: needs scope operate, has {viewer.token.scope.label}"
            await self.service.audited(request, viewer.token.actor, action, target,
                                       "forbidden", needs)  # fmt: skip
            raise Refusal(403, "Your token may only read: actions need scope operate.")
        return viewer

    async def login(self, request: Request) -> tuple[ApiToken, str]:
        """The token a login form names and its secret; `Refusal` for a bad nonce, a
        wrong token (one message whatever was wrong) or too many attempts."""
        address = self.service.clients.address(request)
        wait = await self.logins.wait(address)
        if wait > 0:
            await self.service.refused(request, "dashboard.login", "dashboard", "limited")
            raise Refusal(429, "Too many attempts: wait a moment.", f"{max(1, round(wait))}")
        fields = await form(request)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        sent_nonce = fields.get("nonce", "")
        fresh = bool(nonce) and hmac.compare_digest(sent_nonce.encode(), nonce.encode())
        secret = fields.get("token", "").strip()
        token = await token_of(self.service, secret) if fresh else None
        if token is None:
            await self.service.refused(request, "dashboard.login", "dashboard")
            raise Refusal(401, "That token was not accepted.")
        return token, secret


async def form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the first value of each), small forms only."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Refusal(413, "This form is too large.")
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    except ValueError:
        raise Refusal(400, "This form is not valid.") from None
    return {name: values[0] for name, values in fields.items()}
