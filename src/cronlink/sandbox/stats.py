"""What the sandbox counted, read back through `GET /sandbox/stats`: the grants' refreshes
and refusals, the faults it injected, and under `model` its chat completions."""

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
class ModelStats:
    """`POST /v1/chat/completions`, by outcome; each request with the right key has one."""

    requests: int = 0
    ok: int = 0
    invalid: int = 0
    """200s whose content breaks the schema or labels asked for (`model_invalid_rate`)."""
    malformed: int = 0
    throttled: int = 0
    """Every 429: over `model_rpm`, drawn by `model_throttle_rate`, or `model_status`."""
    over_rpm: int = 0
    errors: int = 0
    """Answers of `model_status` other than 429."""
    bad_requests: int = 0
    unauthorized: int = 0
    """Requests with a missing or wrong key (not among `requests`)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens billed, as a provider bills: for ok and invalid answers only."""
    repeats: int = 0
    """Requests whose `Idempotency-Key` (or, without one, whose exact body) came before."""
    billed_repeats: int = 0
    """Repeats of a request already billed: a client paying twice for one answer."""
    max_per_minute: int = 0
    """The most requests that arrived within any 60 seconds."""


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
    model: ModelStats = field(default_factory=ModelStats)
