"""Which of a schedule's due instants run and which are missed, by the job's misfire policy."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

ON_TIME = timedelta(seconds=30)
"""How late an instant may be handled and still count as on time (policy `skip`)."""


class Misfire(StrEnum):
    LATEST = "latest"
    """One catch-up run for the newest missed instant within the grace period."""
    ALL = "all"
    """Every instant within the grace period runs."""
    SKIP = "skip"
    """Only on-time instants run."""


def plan(
    instants: list[datetime], now: datetime, policy: Misfire, grace: timedelta
) -> list[tuple[datetime, bool]]:
    """Each instant (ascending, all <= now) with True when it is to be recorded missed."""
    window = ON_TIME if policy is Misfire.SKIP else grace
    runnable = [at for at in instants if now - at <= window]
    if policy is not Misfire.ALL:
        runnable = runnable[-1:]
    chosen = set(runnable)
    return [(at, at not in chosen) for at in instants]
