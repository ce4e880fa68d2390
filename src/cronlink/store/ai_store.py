"""Calls to chat models and what they cost (`store.ai`): each recorded with its run's
attempt, and added to its model's month in the same transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from cronlink.records.ai_calls import AiCall, ModelSpend, month_of
from cronlink.store.schema import ai_calls, ai_months
from cronlink.store.verbs import SubStore, reads, writes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date, datetime

    from sqlalchemy import ColumnElement, Connection


def record(c: Connection, call: AiCall) -> float:
    """Keep `call`, and add it to its model's month: what the month cost with it."""
    c.execute(insert(ai_calls).values(
        at=call.at, model=call.model, job=call.job, run_id=call.run_id, attempt=call.attempt,
        input_tokens=call.input_tokens, output_tokens=call.output_tokens,
        cost_usd=call.cost_usd, requests=call.requests, answered=call.answered,
    ))  # fmt: skip
    added = {
        "calls": 1, "failed": 0 if call.answered else 1, "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens, "cost_usd": call.cost_usd,
    }  # fmt: skip
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    fresh = dialect.insert(ai_months).values(model=call.model, month=month_of(call.at), **added)
    total = c.execute(fresh.on_conflict_do_update(
        index_elements=["model", "month"],
        set_={name: ai_months.c[name] + value for name, value in added.items()},
    ).returning(ai_months.c.cost_usd)).scalar_one()  # fmt: skip
    return float(total)


def month(c: Connection, first_day: date) -> list[ModelSpend]:
    """Each model's calls in the month starting on `first_day`, by name."""
    rows = c.execute(
        select(*_figures(ai_months.c.model))
        .where(ai_months.c.month == first_day)
        .group_by(ai_months.c.model)
        .order_by(ai_months.c.model)
    )
    return [_spend(row) for row in rows]


def totals(c: Connection) -> list[ModelSpend]:
    """Each model's calls ever: the counters `/metrics` exposes."""
    rows = c.execute(
        select(*_figures(ai_months.c.model)).group_by(ai_months.c.model).order_by(ai_months.c.model)
    )
    return [_spend(row) for row in rows]


def spent(c: Connection, model: str, first_day: date) -> float:
    """What `model`'s calls cost in the month starting on `first_day` (US dollars)."""
    found = c.execute(
        select(ai_months.c.cost_usd).where(
            ai_months.c.model == model, ai_months.c.month == first_day
        )
    ).scalar()
    return float(found or 0.0)


def callers(c: Connection, since: datetime) -> dict[str, int]:
    """Calls made since `since`, by the job that made them."""
    rows = c.execute(
        select(ai_calls.c.job, func.count()).where(ai_calls.c.at >= since).group_by(ai_calls.c.job)
    )
    return {job: int(count) for job, count in rows}


def of_run(c: Connection, run_id: int) -> list[AiCall]:
    """The calls a run's attempts made, in order."""
    rows = c.execute(
        select(ai_calls).where(ai_calls.c.run_id == run_id).order_by(ai_calls.c.id)
    ).mappings()
    return [
        AiCall(
            model=r["model"], at=r["at"], job=r["job"], run_id=r["run_id"], attempt=r["attempt"],
            input_tokens=int(r["input_tokens"]), output_tokens=int(r["output_tokens"]),
            cost_usd=float(r["cost_usd"]), requests=int(r["requests"]),
            answered=bool(r["answered"]),
        )
        for r in rows
    ]  # fmt: skip


def _figures(model: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    m = ai_months.c
    return [model, func.sum(m.calls), func.sum(m.failed), func.sum(m.input_tokens),
            func.sum(m.output_tokens), func.sum(m.cost_usd)]  # fmt: skip


def _spend(row: Sequence[Any]) -> ModelSpend:
    # PostgreSQL sums integers to Decimal: every figure goes through int() or float().
    model, calls, failed, input_tokens, output_tokens, cost = row
    return ModelSpend(
        model=model, calls=int(calls), failed=int(failed), input_tokens=int(input_tokens),
        output_tokens=int(output_tokens), cost_usd=float(cost),
    )  # fmt: skip


class AiStore(SubStore):
    record = writes(record)
    month = reads(month)
    totals = reads(totals)
    spent = reads(spent)
    callers = reads(callers)
    of_run = reads(of_run)
