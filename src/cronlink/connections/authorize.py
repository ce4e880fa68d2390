"""The authorization-code flow that creates connections: the provider's authorize URL
(with a sealed `state` and PKCE S256) for the browser to visit, then the code it brings
back exchanged for tokens and stored through `Connections.add`, the way `cronlink
connections add` stores them (sealed, with their `created` event and first refresh run).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from cronlink.connections import names, tokens
from cronlink.connections.connect_state import (
    INVALID_STATE,
    LIFETIME,
    PURPOSE,
    ConnectError,
    Flow,
    States,
    cookie_name,
)
from cronlink.errors import ConfigError, RefreshError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from cronlink.connections.providers import Provider
    from cronlink.connections.service import Connections
    from cronlink.records.connections import Connection

SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")
"""One scope token (RFC 6749 §3.3)."""
MAX_SCOPES = 100
MAX_OWNER = 200
MAX_RETURN_TO = 2000
ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RESERVED = frozenset({"response_type", "client_id", "redirect_uri", "scope", "state",
                      "code_challenge", "code_challenge_method"})  # fmt: skip
"""Parameters the flow sets itself: a provider file's `authorize_params` cannot change them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Started:
    """Where to send the browser, and the cookie it must carry back to the callback."""

    url: str
    flow: Flow
    cookie: str
    """The cookie's name; its value is the flow's nonce."""
    max_age: int


class Authorizer:
    def __init__(self, connections: Connections, lifetime: timedelta = LIFETIME) -> None:
        self.connections = connections
        self.states = States(connections.vault.derived(PURPOSE), connections.clock, lifetime)

    def start(
        self, provider: str, *, owner: str | None, scopes: str | None, return_to: str | None,
        redirect_uri: str, name: str | None = None,
    ) -> Started:  # fmt: skip
        """Begin connecting `owner` to `provider`; the browser comes back to `redirect_uri`.
        `name`: the new connection's name (see `names`)."""
        chosen = self._provider(provider)
        if not (chosen.authorize_url or "").strip():
            raise ConnectError(
                "unsupported",
                f"provider {provider!r} has no authorization step (no authorize_url in its "
                "file): add its connections with `cronlink connections add`",
            )
        flow = Flow(
            provider=chosen.name, owner=_owner(owner), scopes=_scopes(scopes, chosen),
            redirect_uri=redirect_uri, return_to=_return_to(return_to),
            verifier=secrets.token_urlsafe(64) if chosen.pkce else None,
            nonce=secrets.token_urlsafe(32),
            expires_at=self.states.clock.now() + self.states.lifetime, name=_name(name),
        )  # fmt: skip
        try:
            # The secret is read too: better refused now than after the user consented.
            client_id, _ = chosen.client()
            endpoint = chosen.url("authorize_url")
        except ConfigError as error:
            raise ConnectError(
                "provider_misconfigured", f"provider {provider!r} is not set up on this server",
                str(error),
            ) from None  # fmt: skip
        extra = {k: v for k, v in chosen.authorize_params.items() if k not in RESERVED}
        if flow.verifier is not None:
            extra |= {"code_challenge": create_s256_code_challenge(flow.verifier),
                      "code_challenge_method": "S256"}  # fmt: skip
        url = prepare_grant_uri(
            endpoint, client_id, "code", redirect_uri, flow.scopes, self.states.seal(flow),
            **extra,
        )  # fmt: skip
        lifetime = int(self.states.lifetime.total_seconds())
        return Started(url=url, flow=flow, cookie=cookie_name(flow.nonce), max_age=lifetime)

    def resume(self, state: str | None, cookies: Mapping[str, str]) -> Flow:
        """The flow a callback's `state` belongs to (see `States.open`)."""
        if not state:
            raise ConnectError("invalid_state", INVALID_STATE, "missing")
        return self.states.open(state, cookies)

    async def finish(
        self, flow: Flow, *, code: str | None, error: str | None, description: str | None
    ) -> Connection:
        """Store the connection the provider's answer grants, or say why there is none."""
        if error is not None:
            raise _refused(flow, error, description)
        if not code:
            raise ConnectError("invalid_request", "the provider sent no code: start again")
        provider = self._provider(flow.provider)
        now = self.connections.clock.now()
        try:
            granted = await tokens.exchange_code(
                self.connections.session, provider, code, flow.redirect_uri, flow.verifier, now
            )
        except RefreshError as failure:
            raise _exchange_failed(provider, failure) from None
        lifetime = None
        if granted.expires_at is not None:
            # A token said to expire already still gets stored: its refresh is due at once.
            lifetime = max(1.0, (granted.expires_at - now).total_seconds())
        try:
            return await self.connections.add(
                provider=provider.name, owner=flow.owner, access_token=granted.access_token,
                refresh_token=granted.refresh_token, expires_in=lifetime,
                scopes=granted.scope or flow.scopes, name=flow.name,
            )  # fmt: skip
        except ConfigError as error:  # the name was taken meanwhile
            raise ConnectError(
                "invalid_request", f"{error}: connect again with another name"
            ) from None

    def _provider(self, name: str) -> Provider:
        try:
            return self.connections.providers.get(name)
        except ConfigError as error:
            raise ConnectError("unknown_provider", str(error)) from None


def back_to(flow: Flow, **params: str) -> str | None:
    """The flow's `return_to` with `params` added (None: it has none)."""
    if flow.return_to is None:
        return None
    return str(add_params_to_uri(flow.return_to, list(params.items())))


def _owner(owner: str | None) -> str:
    text = (owner or "").strip()
    if not text:
        raise ConnectError("invalid_request", "owner: required (who the connection is for)")
    if len(text) > MAX_OWNER or not text.isprintable():
        raise ConnectError("invalid_request", f"owner: at most {MAX_OWNER} printable characters")
    return text


def _name(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return names.check_name(name)
    except ConfigError as error:
        raise ConnectError("invalid_request", str(error)) from None


def _scopes(scopes: str | None, provider: Provider) -> str:
    asked = (scopes or "").replace(",", " ").split()
    if not asked:
        return " ".join(provider.scopes)
    if len(asked) > MAX_SCOPES or not all(SCOPE.fullmatch(s) for s in asked):
        raise ConnectError(
            "invalid_request",
            f"scopes: up to {MAX_SCOPES} scope names separated by spaces or commas",
        )
    return " ".join(dict.fromkeys(asked))


def _return_to(value: str | None) -> str | None:
    """A path on this site, or nothing: anything that could leave it (`//host`, `/\\host`,
    a scheme, control characters browsers drop) is refused, not an open redirect."""
    if not value:
        return None
    parts = urlsplit(value)
    if (
        len(value) > MAX_RETURN_TO or not value.startswith("/") or value.startswith("//")
        or "\\" in value or parts.scheme or parts.netloc or not value.isprintable()
    ):  # fmt: skip
        raise ConnectError(
            "invalid_request", "return_to: must be a path on this site, like /settings"
        )
    return value


def _refused(flow: Flow, error: str, description: str | None) -> ConnectError:
    code = error if ERROR_CODE.fullmatch(error) else "unknown_error"
    said = "".join(c for c in (description or "")[:200] if c.isprintable())
    detail = f"the provider answered {code}" + (f" ({said})" if said else "")
    if code == "access_denied":
        return ConnectError(
            "access_denied", f"the connection to {flow.provider} was declined; nothing was stored",
            detail,
        )  # fmt: skip
    return ConnectError(
        "provider_error", f"{flow.provider} refused the authorization ({code}): start again",
        detail,
    )  # fmt: skip


def _exchange_failed(provider: Provider, failure: RefreshError) -> ConnectError:
    """What a failed code exchange means for the user (the audit detail has the provider's
    words, already scrubbed of the code, the verifier and the client secret)."""
    if failure.kind == "grant":
        return ConnectError(
            "code_rejected",
            f"{provider.name} refused the authorization code (used already, expired or "
            "issued for another request): start again",
            str(failure),
        )
    if failure.kind == "config":
        return ConnectError(
            "provider_misconfigured", f"provider {provider.name!r} is not set up on this server",
            str(failure),
        )  # fmt: skip
    return ConnectError(
        "provider_unavailable", f"{provider.name} did not answer as expected: try again shortly",
        str(failure),
    )  # fmt: skip
