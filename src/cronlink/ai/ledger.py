"""What calls to chat models may be made and what they cost, held in the store so that every
worker process on every machine sees the same month: a model's `budget_usd` is checked
before each call, and each call is recorded (with the run's attempt) when it ends.

A heavy run's process has no store: its `PipeLedger` asks the worker, which holds this one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cronlink.errors import BudgetSpentError
from cronlink.records.ai_calls import AiCall, month_of, next_month

if TYPE_CHECKING:
    from datetime import date

    from cronlink.ai.records import ChatModel
    from cronlink.clock import Clock
    from cronlink.store.ai_store import AiStore

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


class Ledger(Protocol):
    async def admit(self, model: ChatModel) -> None:
        """`BudgetSpentError` when `model`'s month is over its budget."""
        ...

    async def record(self, model: str, caller: Caller, spent: Spent) -> None: ...


class StoreLedger:
    """The ledger over a store, at a clock's time."""

    def __init__(self, store: AiStore, clock: Clock) -> None:
        self._store = store
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

    async def record(self, model: str, caller: Caller, spent: Spent) -> None:
        now = self._clock.now()
        await self._store.record(AiCall(
            model=model, at=now, job=caller.job, run_id=caller.run_id, attempt=caller.attempt,
            input_tokens=spent.input_tokens, output_tokens=spent.output_tokens,
            cost_usd=spent.cost_usd, requests=spent.requests, answered=spent.answered,
        ))  # fmt: skip
        known = self._months.get(model)
        if known is not None and known[0] == month_of(now):
            self._months[model] = (known[0], known[1] + spent.cost_usd, known[2])

    async def _spent(self, model: str, month: date) -> float:
        known = self._months.get(model)
        if known is not None and known[0] == month and time.monotonic() - known[2] < FRESH:
            return known[1]
        spent = await self._store.spent(model, month)
        self._months[model] = (month, spent, time.monotonic())
        return spent
