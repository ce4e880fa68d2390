"""What calls to chat models may be made and what they cost, held in the store so that every
worker process on every machine sees the same month and the same minute: a model's
`budget_usd` is checked before each call, its `rpm` and `tpm` before each request (retries
and repairs are requests too), and each call is recorded (with the run's attempt) when it
ends.

Requests are paced through the store's shared rate buckets (`store/rate_buckets.py`, GCRA):
- `rpm` without a burst: one request every 60 / rpm seconds (and 1 % more) across the
  fleet, so that no minute, however it is cut, holds more than `rpm`;
- `tpm` by each request's estimate (its prompt's characters / 4, 4 a message, and the
  answer's `max_tokens`: what the provider counts against the limit before it answers),
  with a burst of one second's tokens: no minute holds more than `tpm` and a second's.

A heavy run's process has no store: its `PipeLedger` asks the worker, which holds this one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cronlink.errors import BudgetSpentError, CronlinkError
from cronlink.records.ai_calls import AiCall, month_of, next_month

if TYPE_CHECKING:
    from datetime import date

    from cronlink.ai.records import ChatModel
    from cronlink.clock import Clock
    from cronlink.store import Store

log = logging.getLogger("cronlink.ai")
_SLACK = 1e-6
"""Rounding: a request that fits exactly fits (seconds since the epoch, as doubles, are
good to a few tenths of a microsecond)."""
HEADROOM = 1.01
"""Requests are spaced this much wider than 60 / rpm: a provider counts arrivals, which
network jitter moves closer together than cronlink sent them, and a minute holding
`rpm` + 1 is refused."""
FRESH = 5.0
"""Seconds a month's spend read from the store is trusted before it is read again: between
reads a process adds its own calls; other processes' are seen at the next read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Caller:
    """Whom a call is made for: recorded with it."""

    job: str
    run_id: int | None
    attempt: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Spent:
    """What one call cost, answered or not."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    requests: int
    answered: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Pace:
    """One round of taking a request's share of its model's limits: what is still owed
    (the request's `rpm` slot, `tpm` tokens) and how long to wait before asking again."""

    wait: float = 0.0
    slot: bool = False
    tokens: int = 0

    @property
    def granted(self) -> bool:
        return not self.slot and not self.tokens


class Ledger(Protocol):
    async def admit(self, model: ChatModel) -> None:
        """`BudgetSpentError` when `model`'s month is over its budget."""
        ...

    async def take(self, model: ChatModel, owed: Pace) -> Pace:
        """Take what fits of what a request owes `model`'s limits; what is left."""
        ...

    async def record(self, model: str, caller: Caller, spent: Spent) -> None: ...


class StoreLedger:
    """The ledger over a store, at a clock's time."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store.ai
        self._buckets = store
        self._clock = clock
        self._months: dict[str, tuple[date, float, float]] = {}
        """Per model: the month, its spend so far, when it was read (monotonic)."""

    async def admit(self, model: ChatModel) -> None:
        if model.budget_usd is None:
            return
        now = self._clock.now()
        spent = await self._spent(model.name, month_of(now))
        if spent >= model.budget_usd:
            until = next_month(now).isoformat()
            raise BudgetSpentError(
                f"model {model.name}: this month's budget of ${model.budget_usd:,.2f} is spent "
                f"(${spent:,.2f} so far): no new calls until {until}, or raise budget_usd in "
                f"[ai.models.{model.name}]"
            )

    async def take(self, model: ChatModel, owed: Pace) -> Pace:
        now = self._clock.now().timestamp()
        slot = owed.slot and model.rpm is not None
        tokens = owed.tokens if model.tpm is not None else 0
        if tokens and model.tpm is not None:
            # A bucket's burst never changes (the store reads a bucket further from full
            # than its burst as a clock set back): a request bigger than a second's
            # tokens takes them a second's worth at a time.
            interval, burst = 60.0 / model.tpm, max(1, model.tpm // 60)
            granted, tat = await self._buckets.take_tokens(
                f"ai-tpm:{model.name}", min(tokens, burst), interval, burst * interval + _SLACK,
                now,
            )  # fmt: skip
            tokens -= granted
            if tokens:
                room = min(tokens, burst) * interval  # asked again once that many fit
                return Pace(wait=max(0.0, tat + room - burst * interval - now), slot=slot,
                            tokens=tokens)  # fmt: skip
        # The slot comes last, once the tokens are there: the request is sent the moment
        # it has it, so sends are spaced as the slots are.
        if slot and model.rpm is not None:
            interval = 60.0 / model.rpm * HEADROOM
            granted, tat = await self._buckets.take_tokens(
                f"ai-rpm:{model.name}", 1, interval, interval + _SLACK, now
            )
            if not granted:
                return Pace(wait=max(0.0, tat - now), slot=True)
        return Pace()

    async def record(self, model: str, caller: Caller, spent: Spent) -> None:
        now = self._clock.now()
        try:
            month = await self._store.record(AiCall(
                model=model, at=now, job=caller.job, run_id=caller.run_id,
                attempt=caller.attempt, input_tokens=spent.input_tokens,
                output_tokens=spent.output_tokens, cost_usd=spent.cost_usd,
                requests=spent.requests, answered=spent.answered,
            ))  # fmt: skip
        except CronlinkError as error:
            # The answer is paid for: failing the call for its record would pay twice.
            log.warning("a call to model %s (run %s) went unrecorded: %s", model,
                        caller.run_id, error)  # fmt: skip
            return
        # The month as the store has it now, this call and every other process's in it.
        self._months[model] = (month_of(now), month, time.monotonic())

    async def _spent(self, model: str, month: date) -> float:
        known = self._months.get(model)
        if known is not None and known[0] == month and time.monotonic() - known[2] < FRESH:
            return known[1]
        spent = await self._store.spent(model, month)
        self._months[model] = (month, spent, time.monotonic())
        return spent
