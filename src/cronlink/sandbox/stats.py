"""What the sandbox counted, read back through `GET /sandbox/stats`: the grants' refreshes
and refusals, and the faults it injected."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True, slots=True)
class Violation:
    """A request of a paused account that came after the pause's tolerance."""

    user: str
    path: str
    early_by: float
    """Seconds before the pause's end it arrived."""


@dataclass
class Stats:
    refreshes: int = 0
    invalid_grants: int = 0
    reuse_revocations: int = 0
    grace_reuses: int = 0
    probes: int = 0
    throttled: int = 0
    """Every 429 of throttling: `throttled_users`, a drawn throttle, a paused account."""
    pauses: int = 0
    """Drawn throttles, each of which paused its account for `retry_after` seconds."""
    paused_violations: int = 0
    violations: list[Violation] = field(default_factory=list)
    """The last hundred of them."""
    hangs: int = 0
    lost_answers: int = 0
    malformed: int = 0
