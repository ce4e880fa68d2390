"""How the dashboard writes instants, durations and rates (Jinja2 filters)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def when(value: datetime | None) -> str:
    """An instant in UTC, to the second."""
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def zoned(value: datetime) -> str:
    """An instant on its own zone's wall clock, with the zone's name."""
    return value.strftime("%Y-%m-%d %H:%M %Z")


def age(value: datetime | None, now: datetime) -> str:
    """How long ago (or, for a future instant, how soon), coarsely."""
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    text = span(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    return f"{ms} ms" if ms < 10_000 else span(ms / 1000)


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when,
    "zoned": zoned,
    "age": age,
    "duration": duration,
    "span": span,
    "percent": percent,
}
