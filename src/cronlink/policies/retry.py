"""Retry as a pure policy: given an attempt and its error, retry at an instant or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    spent: bool
    """True when attempts ran out; False when the error is not one to retry."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """What the policy needs to know about a failed attempt."""

    type_names: tuple[str, ...]
    """The error's class and base class names (`TimeoutError`, `OSError`, …)."""
    status: int | None = None
    retry_after: timedelta | None = None
    retryable: bool = True
    """False for failures no retry can fix (a memory limit, an unknown job)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter between `min_backoff` and `max_backoff`."""

    max_attempts: int = 3
    min_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=5)
    retry_on: tuple[str | int, ...] = field(default=())
    """Exception class names or HTTP statuses to retry; empty means every failure."""

    def decide(
        self, attempt: int, failure: Failure, now: datetime, rng: random.Random | None = None
    ) -> Retry | GiveUp:
        if not failure.retryable or not self._matches(failure):
            return GiveUp(spent=False)
        if attempt >= self.max_attempts:
            return GiveUp(spent=True)
        ceiling = min(self.max_backoff, self.min_backoff * 2 ** (attempt - 1))
        jitter = (rng or random).uniform(self.min_backoff.total_seconds(), ceiling.total_seconds())
        delay = timedelta(seconds=jitter)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        return Retry(at=now + delay)

    def _matches(self, failure: Failure) -> bool:
        if not self.retry_on:
            return True
        return any(
            (isinstance(rule, int) and rule == failure.status)
            or (isinstance(rule, str) and rule in failure.type_names)
            for rule in self.retry_on
        )
