"""The token endpoint: refresh requests and what their answers mean.

authlib builds the request (grant parameters, client authentication); the one shared
aiohttp session sends it. Every failure becomes a `RefreshError` whose kind decides what
happens to the connection (see its docstring); no message carries a token or a secret.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_token_request

from cronlink.envtext import retry_after
from cronlink.errors import AddressRefusedError, ConfigError, RefreshError
from cronlink.scrubbing import Scrubber, configured

if TYPE_CHECKING:
    from cronlink.connections.providers import Provider
    from cronlink.records.connections import Connection

TIMEOUT = 30.0
"""Seconds a token request may take by default; the refresh lease is twice as long."""
TRANSIENT_STATUSES = frozenset({408, 409, 423, 425, 429})
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unsupported_grant_type"})
EXCERPT = 200
EXPIRY_SKEW = timedelta(seconds=5)
PROMPT_RETRIES = 4
PROMPT_RETRY_WITHIN = (1.0, 2.0)
"""Seconds, drawn at random, before each of the first retries of a failed refresh."""
MAX_LIFETIME = 10 * 365 * 86400.0
"""Longer lifetimes (or garbage) are read as "no expiry given"."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    """None when the answer had none: the caller keeps the one it has."""
    expires_at: datetime | None
    scope: str | None


async def refresh(
    session: aiohttp.ClientSession,
    provider: Provider,
    refresh_token: str,
    now: datetime,
    within: float = TIMEOUT,
) -> TokenSet:
    """Exchange `refresh_token` at the provider's token endpoint."""
    body = prepare_token_request("refresh_token", refresh_token=refresh_token)
    return await _token_request(session, provider, body, now, [refresh_token], within)


async def exchange_code(
    session: aiohttp.ClientSession,
    provider: Provider,
    code: str,
    redirect_uri: str,
    verifier: str | None,
    now: datetime,
) -> TokenSet:
    """Exchange an authorization code (with its PKCE verifier) for tokens."""
    extra = {"code_verifier": verifier} if verifier else {}
    body = prepare_token_request(
        "authorization_code", code=code, redirect_uri=redirect_uri, **extra
    )
    sent = [code, verifier] if verifier else [code]
    return await _token_request(session, provider, body, now, sent, TIMEOUT)


async def _token_request(
    session: aiohttp.ClientSession,
    provider: Provider,
    body: str,
    now: datetime,
    sent: list[str],
    within: float,
) -> TokenSet:
    """POST `body` to the token endpoint; the answer must come `within` seconds."""
    try:
        client_id, client_secret = provider.client()
        url = provider.url("token_url")
    except ConfigError as error:
        raise RefreshError(str(error), kind="config") from None
    scrub = Scrubber([*sent, client_secret, *configured(os.environ)])
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        **provider.token_headers,
    }
    url, headers, body = ClientAuth(client_id, client_secret, provider.client_auth).prepare(
        "POST", url, headers, body
    )
    shown = scrub(url)
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=within),
            allow_redirects=False,
        ) as response:  # fmt: skip
            status = response.status
            text = await response.text(errors="replace")
            wait = retry_after(response.headers.get("Retry-After"))
    except AddressRefusedError as error:
        # The operator's to fix (the provider's URL or the egress policy); users' connections
        # are left as they are.
        said = scrub(f"{provider.name} token endpoint: {error}")
        raise RefreshError(said, kind="config") from None
    except TimeoutError:
        raise RefreshError(
            f"{provider.name} token endpoint {shown} did not answer within {within:g}s",
            kind="transient",
        ) from None
    except aiohttp.ClientConnectorError as error:
        raise RefreshError(
            f"{provider.name} token endpoint {shown} unreachable ({type(error).__name__})",
            kind="transient",
        ) from None
    except aiohttp.ClientError as error:
        # Sent, perhaps processed, and no answer: the provider may have rotated already.
        raise RefreshError(
            f"{provider.name} token endpoint {shown} gave no answer ({type(error).__name__})",
            kind="transient",
        ) from None
    return _interpret(provider, status, text, wait, now, scrub)


def _interpret(
    provider: Provider,
    status: int,
    text: str,
    wait: timedelta | None,
    now: datetime,
    scrub: Scrubber,
) -> TokenSet:
    where = f"{provider.name} token endpoint"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise RefreshError(
            f"{where} answered HTTP {status}",
            kind="transient",
            retry_after=None if wait is None else wait.total_seconds(),
            throttled=status == 429,
        )
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        message = f"{where} answered HTTP {status} without a JSON object"
        raise RefreshError(message, kind="transient")
    error = data.get("error")
    if data.get("ok") is False or error or status >= 400:
        raise _refused(provider, status, str(error or "unknown_error"), data, scrub)
    return _token_set(provider, data, now, where)


def _refused(
    provider: Provider, status: int, error: str, data: dict[str, Any], scrub: Scrubber
) -> RefreshError:
    description = scrub(str(data.get("error_description") or ""))[:EXCERPT]
    detail = f"{provider.name} refused the refresh: {scrub(error)[:EXCERPT]}"
    if description:
        detail += f" ({description})"
    if error in provider.invalid_grant_errors or error == "invalid_scope":
        return RefreshError(detail, kind="grant")
    if error in CLIENT_ERRORS:
        return RefreshError(
            f"{detail}; check the provider's client id and secret (users' connections are "
            "left as they are)",
            kind="config",
        )
    # An error we do not know: never disconnect users over it, tell the operator.
    return RefreshError(f"{detail} (HTTP {status})", kind="config")


def _token_set(provider: Provider, data: dict[str, Any], now: datetime, where: str) -> TokenSet:
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise RefreshError(f"{where} answered without an access_token", kind="transient")
    refresh_token = data.get("refresh_token")
    scope = data.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        expires_at=expiry(data, now, provider.default_expires_in),
        scope=scope if isinstance(scope, str) else None,
    )


def expiry(data: dict[str, Any], now: datetime, default: timedelta | None) -> datetime | None:
    """When the access token expires: `expires_in` seconds (a number or numeric text), or
    an `expires_at` epoch in seconds or milliseconds; else `default` (None: it lasts)."""
    seconds = _number(data.get("expires_in"))
    if seconds is not None and 0 < seconds <= MAX_LIFETIME:
        return now + timedelta(seconds=seconds)
    at = _number(data.get("expires_at"))
    if at is not None and 0 < at < 1e14:  # seconds or milliseconds, before year 5138
        at = at / 1000 if at > 100_000_000_000 else at  # milliseconds since 1973
        return datetime.fromtimestamp(at, tz=now.tzinfo)
    return None if default is None else now + default


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def retry_in(error: RefreshError, failures: int) -> timedelta:
    """How long to wait before retrying a failed refresh.

    The first retries come within seconds, all four inside 8 s: an answer lost on its way
    (a timeout, a reset) may have rotated the refresh token already, and a rotating
    provider accepts the old one again only for a short grace window (often 10 s), counted
    from that lost answer however the retries fare. After those, the provider's
    Retry-After, or exponential backoff from 5 s up to an hour; each drawn with jitter so
    that the connections of a provider that was down do not all come back in the same
    second.
    """
    if failures < PROMPT_RETRIES and error.retry_after is None:
        return timedelta(seconds=random.uniform(*PROMPT_RETRY_WITHIN))
    base = min(3600.0, 5.0 * 2 ** min(max(failures - PROMPT_RETRIES, 0), 12))
    backoff = timedelta(seconds=base * (1 + random.random() / 10))
    if error.retry_after is not None:
        return max(backoff, timedelta(seconds=error.retry_after))
    return backoff


def refresh_due(
    provider: Provider, expires_at: datetime | None, issued: datetime
) -> datetime | None:
    """When to refresh: the provider's margin before expiry, or half-way through the
    token's life when it lives less than twice the margin (else it would be due at once)."""
    if expires_at is None:
        return None
    return expires_at - min(provider.refresh_margin, (expires_at - issued) / 2)


def due(connection: Connection, now: datetime) -> bool:
    """Whether a refresh is due: the stored instant has come (the one its scheduled run
    was queued for; after a failure, the retry's), or the token has expired and nothing
    is scheduled."""
    if connection.refresh_due_at is not None:
        return connection.refresh_due_at <= now
    return expired(connection, now)


def expired(connection: Connection, now: datetime) -> bool:
    """Whether the access token is expired, or so close to it (a few seconds, less for a
    token that lives only seconds) that a request sent with it now could arrive too late."""
    at = connection.expires_at
    if at is None:
        return False
    issued = connection.refreshed_at or connection.created_at
    return at - min(EXPIRY_SKEW, (at - issued) / 4) <= now
