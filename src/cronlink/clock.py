"""Time as a parameter: loops ask a `Clock`; tests hand in their own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def utc_instant(text: str) -> datetime:
    """`text`, an ISO 8601 instant with its offset (or `Z`), as UTC. `ValueError` saying
    why when it is not one, has no offset (a wall time alone names no instant), or lies
    outside the years 1-9999 once in UTC."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("is not an ISO 8601 instant") from None
    if at.tzinfo is None:
        raise ValueError("has no time zone offset (add Z or +HH:MM)")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once in UTC") from None


def iso_seconds(at: datetime) -> str:
    """An instant as cronlink writes it in results and messages: ISO 8601 to the second,
    with its offset."""
    return at.isoformat(timespec="seconds")
