"""What calls to chat models cost, on both engines: each call kept with its run's attempt,
each model's month the exact sum of its calls however many processes record at once, a
budget's month read in one row, months apart at the turn of the month (UTC)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cronlink.ai.ledger import Caller, Pace, Spent, StoreLedger
from cronlink.ai.records import ChatModel
from cronlink.errors import BudgetSpentError
from cronlink.records.ai_calls import AiCall, ModelSpend
from cronlink.store import Store, store_for

LAST_SECOND = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


ONE = AiCall(
    model="fast", at=LAST_SECOND, job="process-automation", run_id=7, attempt=1,
    input_tokens=120, output_tokens=30, cost_usd=0.000036, requests=1, answered=True,
)  # fmt: skip


def call(**changes: Any) -> AiCall:
    return dataclasses.replace(ONE, **changes)


async def test_each_call_is_kept_with_its_attempt_and_added_to_its_month(store: Store) -> None:
    await store.ai.record(call())
    await store.ai.record(call(attempt=2, answered=False, input_tokens=300, cost_usd=0.01))
    await store.ai.record(call(model="slow", run_id=8))
    await store.ai.record(call(at=LAST_SECOND + timedelta(seconds=1)))  # January
    kept = await store.ai.of_run(7)
    assert [(c.model, c.attempt, c.answered, c.input_tokens) for c in kept] == [
        ("fast", 1, True, 120), ("fast", 2, False, 300), ("fast", 1, True, 120),
    ]  # fmt: skip
    assert kept[0] == call()
    december = await store.ai.month(date(2026, 12, 1))
    assert december == [
        ModelSpend(model="fast", calls=2, failed=1, input_tokens=420, output_tokens=60,
                   cost_usd=pytest.approx(0.010036)),  # type: ignore[arg-type]
        ModelSpend(model="slow", calls=1, failed=0, input_tokens=120, output_tokens=30,
                   cost_usd=pytest.approx(0.000036)),  # type: ignore[arg-type]
    ]  # fmt: skip
    assert [m.calls for m in await store.ai.month(date(2027, 1, 1))] == [1]
    assert await store.ai.spent("fast", date(2027, 1, 1)) == pytest.approx(0.000036)
    assert await store.ai.spent("nobody", date(2027, 1, 1)) == 0.0
    totals = {m.model: (m.calls, m.input_tokens) for m in await store.ai.totals()}
    assert totals == {"fast": (3, 540), "slow": (1, 120)}


async def test_calls_recorded_at_once_from_two_stores_add_up_exactly(store: Store) -> None:
    other = store_for(store.url)
    await other.open()
    try:
        await asyncio.gather(*(
            (store, other)[n % 2].ai.record(call(run_id=n, input_tokens=n, cost_usd=n / 1000))
            for n in range(1, 101)
        ))  # fmt: skip
    finally:
        await other.close()
    [month] = await store.ai.month(date(2026, 12, 1))
    assert (month.calls, month.input_tokens) == (100, 5050)
    assert month.cost_usd == pytest.approx(5.05)


class Stopped:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


async def test_a_spent_budget_refuses_new_calls_until_the_month_turns(store: Store) -> None:
    model = ChatModel(name="fast", base_url="http://127.0.0.1:9/v1", model="m",
                      api_key="${KEY}", budget_usd=0.05)  # fmt: skip
    clock = Stopped(LAST_SECOND - timedelta(days=1))
    ledger = StoreLedger(store, clock)
    who = Caller(job="summarise", run_id=1, attempt=1)
    spent = Spent(input_tokens=1000, output_tokens=10, cost_usd=0.03, requests=1, answered=True)
    await ledger.admit(model)
    await ledger.record("fast", who, spent)
    await ledger.admit(model)  # $0.03 of $0.05
    await ledger.record("fast", who, spent)
    with pytest.raises(BudgetSpentError) as refused:
        await ledger.admit(model)
    assert str(refused.value) == (
        "model fast: this month's budget of $0.05 is spent ($0.06 so far): no new calls "
        "until 2027-01-01, or raise budget_usd in [ai.models.fast]"
    )
    assert not refused.value.retryable
    # Another process's ledger reads the month from the store, not from its own calls.
    with pytest.raises(BudgetSpentError):
        await StoreLedger(store, clock).admit(model)
    clock.at = LAST_SECOND + timedelta(seconds=1)
    await ledger.admit(model)  # a new month
    unlimited = ChatModel(name="free", base_url="http://127.0.0.1:9/v1", model="m", api_key="k")
    await ledger.admit(unlimited)


T = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_requests_are_paced_to_rpm_and_tpm_across_stores(store: Store) -> None:
    other = store_for(store.url)
    await other.open()
    try:
        clock = Stopped(T)
        one, two = StoreLedger(store, clock), StoreLedger(other, clock)
        model = ChatModel(name="paced", base_url="http://127.0.0.1:9/v1", model="m",
                          api_key="${KEY}", rpm=60, tpm=600)  # fmt: skip
        # rpm 60: one request a second, fleet-wide, no burst.
        assert (await one.take(model, Pace(slot=True))).granted
        refused = await two.take(model, Pace(slot=True))
        # Spaced 1 % wider than 60 / rpm: arrivals jitter closer at the provider.
        assert (refused.slot, refused.wait) == pytest.approx((True, 1.01))
        clock.at = T + timedelta(seconds=1.01)
        assert (await two.take(model, Pace(slot=True))).granted
        # tpm 600: 10 tokens a second, a burst of 10; a bigger request takes them as they
        # come, turn about with the others.
        big = await one.take(model, Pace(tokens=25))
        assert (big.tokens, big.wait) == pytest.approx((15, 1.0))
        small = await two.take(model, Pace(tokens=5))
        assert (small.tokens, small.wait) == pytest.approx((5, 0.5))
        clock.at += timedelta(seconds=0.5)
        assert (await two.take(model, small)).granted
        clock.at += timedelta(seconds=0.5)
        big = await one.take(model, big)
        assert (big.tokens, big.wait) == pytest.approx((10, 1.0))
        clock.at += timedelta(seconds=1)
        assert (await one.take(model, big)).granted
        # A model with a tpm and no rpm: its requests owe no slot.
        tokens_only = ChatModel(name="tpm-only", base_url="http://127.0.0.1:9/v1", model="m",
                                api_key="${KEY}", tpm=600)  # fmt: skip
        assert (await one.take(tokens_only, Pace(slot=True, tokens=5))).granted
        unlimited = ChatModel(name="free", base_url="http://127.0.0.1:9/v1", model="m",
                              api_key="${KEY}")  # fmt: skip
        assert (await one.take(unlimited, Pace(slot=True, tokens=10**9))).granted
    finally:
        await other.close()
