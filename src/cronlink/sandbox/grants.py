"""The sandbox's grants and tokens, in memory, with rotation and reuse detection.

Each authorization is a grant (a token family). With rotation on, a refresh replaces the
family's refresh token; a replaced one is still accepted for a grace period after its own
replacement, as often as it comes (as Cognito's `RetryGracePeriodSeconds`, Auth0's reuse
interval and Okta's grace period do, so a client whose answers were lost can retry), and
after it, presenting it again is reuse: the whole grant is revoked, as RFC 9700 §4.14.2
describes.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cronlink.sandbox.stats import Stats

CLIENT_ID = "cronlink-sandbox"
CLIENT_SECRET = "sandbox-secret"
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass
class Client:
    """authlib's ClientMixin for a provider's one client."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: list[str] = field(default_factory=list)
    auth_methods: tuple[str, ...] = AUTH_METHODS
    """How the client may authenticate at the token endpoint."""

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Any loopback callback: the tests and the demo pick their ports at run time.
        return redirect_uri.startswith(("http://127.0.0.1", "http://localhost"))

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code:
    """authlib's AuthorizationCodeMixin."""

    code: str
    client_id: str
    user: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Grant:
    id: int
    user: str
    client_id: str
    scope: str
    refresh_token: str
    revoked: bool = False


@dataclass
class RefreshCredential:
    """What authlib's refresh grant checks: the token's grant, client and scope."""

    grant: Grant
    token: str

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.grant.client_id

    def get_scope(self) -> str:
        return self.grant.scope

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return self.grant.revoked


class Grants:
    """One provider's client, codes, grants and tokens; each provider the sandbox plays has
    its own, so one's tokens mean nothing to another."""

    def __init__(self, client: Client | None = None, scope: str = "profile events") -> None:
        self.client = client or Client(CLIENT_ID, CLIENT_SECRET)
        self.scope = scope
        """What `mint` grants unless told."""
        self.codes: dict[str, Code] = {}
        self.grants: dict[int, Grant] = {}
        self.by_refresh: dict[str, Grant] = {}
        self.retired: dict[str, tuple[Grant, float]] = {}
        """Refresh tokens rotated away, with when: each is still accepted for the grace
        period after its own rotation (as often as it is presented, as Auth0's reuse
        interval and Okta's grace period do); presenting one after that is reuse."""
        self.access: dict[str, tuple[Grant, float]] = {}
        self.stats = Stats()
        self.rotation = True
        self.grace = 120.0
        self.lifetime = 3600.0

    def new_grant(self, user: str, scope: str) -> Grant:
        grant = Grant(
            id=len(self.grants) + 1, user=user, client_id=self.client.client_id, scope=scope,
            refresh_token=_token("rt"),
        )  # fmt: skip
        self.grants[grant.id] = grant
        self.by_refresh[grant.refresh_token] = grant
        return grant

    def mint(self, user: str, scope: str | None = None) -> dict[str, Any]:
        """A grant and its first tokens, without the browser flow (tests, the demo)."""
        grant = self.new_grant(user, self.scope if scope is None else scope)
        return {**self.access_token(grant), "refresh_token": grant.refresh_token}

    def access_token(self, grant: Grant) -> dict[str, Any]:
        token = _token("at")
        self.access[token] = (grant, time.time() + self.lifetime)
        return {
            "access_token": token, "token_type": "Bearer", "expires_in": int(self.lifetime),
            "scope": grant.scope,
        }  # fmt: skip

    def credential(self, refresh_token: str) -> RefreshCredential | None:
        grant = self.by_refresh.get(refresh_token)
        if grant is not None and not grant.revoked:
            return RefreshCredential(grant, refresh_token)
        retired = self.retired.get(refresh_token)
        if retired is not None and not retired[0].revoked:
            grant, since = retired
            if time.time() - since <= self.grace:
                self.stats.grace_reuses += 1
                return RefreshCredential(grant, refresh_token)
            grant.revoked = True
            self.stats.reuse_revocations += 1
        self.stats.invalid_grants += 1
        return None

    def rotate(self, credential: RefreshCredential) -> str:
        """The refresh token to hand out after a refresh with `credential`."""
        grant = credential.grant
        self.stats.refreshes += 1
        if not self.rotation:
            return grant.refresh_token
        old = grant.refresh_token
        grant.refresh_token = _token("rt")
        self.by_refresh.pop(old, None)
        self.by_refresh[grant.refresh_token] = grant
        # A grace retry presented an older token: it keeps its own rotation time.
        self.retired[old] = (grant, time.time())
        return grant.refresh_token

    def family(self, refresh_token: str) -> Grant | None:
        """The grant `refresh_token` belongs or belonged to (rotated away, revoked or not)."""
        retired = self.retired.get(refresh_token)
        return self.by_refresh.get(refresh_token) or (retired[0] if retired else None)

    def holder(self, access_token: str) -> Grant | None:
        found = self.access.get(access_token)
        if found is None or found[0].revoked or found[1] < time.time():
            return None
        return found[0]

    def revoke_all(self) -> None:
        for grant in self.grants.values():
            grant.revoked = True


def _token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(24)}"
