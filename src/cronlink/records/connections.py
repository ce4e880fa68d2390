"""The records of the connection domain: frozen, no behaviour, no secret in `repr`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ConnectionState(StrEnum):
    """Whether cronlink may use a connection."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    """The provider refused the grant for good (`invalid_grant`): the user must reconnect."""
    DISABLED = "disabled"
    """Turned off by an operator: never refreshed, checked or used."""


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    """Failing, but not for long enough to call it down (damping). A throttled provider
    (429) answered: that counts as healthy."""
    DOWN = "down"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, kw_only=True, slots=True)
class Secrets:
    """What is encrypted at rest. `repr` never shows a token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Connection:
    """A stored connection, without its secrets (they stay sealed until `credentials`)."""

    id: int
    provider: str
    owner: str
    name: str | None = None
    """The owner's handle on it (`crm-main`), unique among the owner's connections: an
    automation's steps may name it (`connection = "crm-main"`)."""
    state: ConnectionState
    health: Health
    scopes: str
    version: int
    """Bumped by every change of the secrets: the compare-and-swap that fences a refresh."""
    expires_at: datetime | None
    refresh_due_at: datetime | None
    refreshed_at: datetime | None
    refresh_failures: int
    last_error: str | None
    """Why the last refresh or check failed, or why the connection needs reauth."""
    health_failures: int
    health_successes: int
    checked_at: datetime | None
    latency_ms: int | None
    used_at: datetime | None
    """Last successful real use (passes for a health probe)."""
    paused_until: datetime | None = None
    """The provider answered 429: no request to the account starts before this."""
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Sealed:
    """A connection with its encrypted secrets, as the store returns it for a refresh."""

    connection: Connection
    ciphertext: str = field(repr=False)
    key_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Link:
    """A connection a step names, found among the automation owner's connections: where
    its requests go and on whose account (`Connections.resolve`)."""

    connection_id: int
    name: str | None
    provider: str
    base_url: str
    """The provider's base URL, which a step's paths (`/api/…`) are relative to."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """What a handler gets: a valid access token, never logged."""

    connection_id: int
    provider: str
    access_token: str = field(repr=False)
    expires_at: datetime | None
    version: int
    """The secrets' version the token was read at: a 401 renews it only if no one else
    has since (`Connections.renew`)."""

    @property
    def authorization(self) -> str:
        return f"Bearer {self.access_token}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Something that happened to a connection: alerts and the dashboard read these."""

    id: int
    connection_id: int
    at: datetime
    kind: str
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthCheck:
    """The outcome of one health check, as the store records it."""

    connection_id: int
    health: Health
    failures: int
    successes: int
    latency_ms: int | None
    event: str | None
    """What changed ("healthy -> down: HTTP 503"), None when the health stayed the same."""
