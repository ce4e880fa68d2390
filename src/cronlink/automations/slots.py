"""When an automation polls: every `interval`, at its own deterministic offset, so ten
thousand automations on one interval spread over it instead of all polling at second 0."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def offset_for(name: str, interval: timedelta) -> timedelta:
    """A stable offset in [0, interval) from the automation's name (same on every machine)."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    seconds = max(1, int(interval.total_seconds()))
    return timedelta(seconds=digest % seconds)


def next_slot(after: datetime, interval: timedelta, offset: timedelta) -> datetime:
    """The first instant `epoch + offset + k * interval` strictly after `after`."""
    step = max(1, int(interval.total_seconds()))
    since = int((after - _EPOCH - offset).total_seconds())
    return _EPOCH + offset + timedelta(seconds=(since // step + 1) * step)
