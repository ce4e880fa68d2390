"""The records of alerting: frozen, no behaviour.

The store reads `Facts`; the rules turn them into `Finding`s; the store keeps each
finding's `Alert` (firing or resolved, and which message it still owes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Owed(StrEnum):
    """The message an alert still owes its channels."""

    FIRING = "firing"
    RECOVERED = "recovered"


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """A condition that holds now: a stable `key` (`job-failing:sync`), a one-line
    `subject` and a `body` with the figures behind it (never an error's text: it may
    carry a secret)."""

    key: str
    rule: str
    subject: str
    body: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """A finding as stored: what its channels were told, and what they are still owed."""

    key: str
    rule: str
    subject: str
    body: str
    state: AlertState
    since: datetime
    """When it started firing (this time)."""
    resolved_at: datetime | None
    notified_at: datetime | None
    """When its last message went out."""
    owed: Owed | None


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    """`[alerts]` as the rules and the delivery use it."""

    rules: frozenset[str]
    failing_after: int = 3
    grace: timedelta = timedelta(minutes=5)
    p95_ratio: float = 0.8
    p95_runs: int = 50
    max_messages: int = 20
    window: timedelta = timedelta(hours=1)
    repeat: timedelta | None = None
    label: str = "cronlink"


@dataclass(frozen=True, kw_only=True, slots=True)
class RecentRun:
    id: int
    state: str
    finished_at: datetime | None
    duration_ms: int | None
    attempt: int
    error_type: str | None
    error_reason: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFacts:
    job: str
    recent: tuple[RecentRun, ...] = ()
    """Its newest finished runs (cancelled ones aside), newest first."""
    last_success: datetime | None = None
    """When its newest successful run finished."""
    first_fire: datetime | None = None
    """Its earliest scheduled instant on record: the switch is armed from there."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionFacts:
    id: int
    provider: str
    owner: str
    state: str
    health: str
    health_failures: int
    checked_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class TriggerFacts:
    name: str
    trigger: str | None
    advanced_at: datetime | None
    last_success_at: datetime | None
    poll_failures: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Facts:
    """What the rules look at, read in one transaction."""

    jobs: dict[str, JobFacts] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()
    connections: tuple[ConnectionFacts, ...] = ()
    """Connections that need reauth, and active ones that are down."""
    triggers: tuple[TriggerFacts, ...] = ()
    """Active automations whose trigger is marked stalled."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """What the channels are sent."""

    title: str
    body: str
    kind: str = "info"
    """`info`, `success`, `warning` or `failure` (apprise's notify types)."""
