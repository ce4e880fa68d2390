"""What calls to chat models cost, as the store keeps it: each call (for a run's attempts)
and each model's month (for budgets, `cronlink usage` and `/metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AiCall:
    """One call to a declared model, answered or not: what the provider billed for it."""

    model: str
    """The name it is declared as (`[ai.models.NAME]`)."""
    at: datetime
    job: str
    run_id: int | None
    attempt: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    requests: int
    """Sent for it: transport retries and repairs included."""
    answered: bool
    """A valid answer came back (a call can be billed and still fail)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSpend:
    """A model's calls over a span: a month, or all time."""

    model: str
    calls: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def month_of(at: datetime) -> date:
    """The first day of `at`'s month (UTC): a model's budget is per calendar month."""
    return at.astimezone(UTC).date().replace(day=1)


def next_month(at: datetime) -> date:
    """The first day of the month after `at`'s (UTC)."""
    start = month_of(at)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)
