"""The records of the automation domain: frozen, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class AutomationState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    """Not polled; events already seen are still processed."""


class EventState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD_LETTER = "dead_letter"
    """A step failed for good; `replay` starts again from that step."""
    BASELINE = "baseline"
    """Seen when the automation started from "now": recorded so it never fires."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Cursor:
    """How far a trigger has read, stored with its automation."""

    watermark: str | int | None = None
    """The newest item seen (a timestamp in ISO form, or an id), never the time of a poll."""
    token: str | None = None
    """A provider's delta token (cursor kind `token`)."""
    resume: str | None = None
    """The next page's URL when the last poll stopped at its page limit mid-burst."""
    etag: str | None = None
    primed: bool = False
    """False until the first poll of an automation that starts from "now"."""
    start: str | None = None
    """An automation started from an instant: items older than it never fire. Dropped
    once the watermark is a lookback past it (no such item can come back)."""
    pass_started: str | None = None
    """`timestamp`: when the read going on now began (it may span several polls), in the
    provider's clock (its `Date`)."""
    lookback_from: str | None = None
    """`timestamp`: when the last read that reached the end began. Every item older than
    a lookback before it was visible then and was read: later polls look back no further
    than that, instead of re-reading a whole lookback behind a watermark that lags."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Automation:
    id: int
    name: str
    connection_id: int
    trigger: str | None
    """The provider trigger polled, or None for an automation that runs on `schedule`."""
    params: dict[str, Any]
    steps: list[dict[str, Any]]
    schedule: str | None
    interval: timedelta
    offset: timedelta
    """Where in each interval this automation polls: spreads polls over the interval."""
    concurrency: int
    """Events of this automation processed at once (1: one at a time, in order)."""
    state: AutomationState
    cursor: Cursor
    next_poll_at: datetime | None
    last_poll_at: datetime | None
    last_success_at: datetime | None
    advanced_at: datetime | None
    """When the watermark last moved (or the automation was created)."""
    poll_failures: int
    last_error: str | None
    stalled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AutomationEvent:
    """An item a trigger saw, stored once per (automation, key), with its progress."""

    id: int
    automation_id: int
    key: str
    state: EventState
    data: Any
    seen_at: datetime
    run_id: int | None
    step: int
    """The next step to run: a replay of a dead letter starts here."""
    replays: int = 0
    """Replays of the event once done: part of its steps' idempotency keys."""
    outputs: dict[str, Any] = field(default_factory=dict)
    """What each finished step returned, by step name (and a running sync's checkpoint)."""
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Work:
    """An event taken by a run, with what its steps need."""

    event: AutomationEvent
    automation: Automation
    provider: str
    base_url: str = ""
    """The provider's base URL, which `http` steps' paths are relative to."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PollRecord:
    """What one poll stores (see `AutomationStore.record_polls`)."""

    automation: Automation
    token: str
    items: list[tuple[str, Any]]
    cursor: Cursor
    next_poll_at: datetime
    fire: bool
    """False for the first poll of an automation that starts from "now": items are
    recorded so they never fire."""
    baseline: frozenset[str] = frozenset()
    """Keys recorded without firing (items older than the automation's start)."""
