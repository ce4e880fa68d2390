"""Inserting a new run, written once for every path that queues one: its columns, taken
from the `runs` table, and their values, taken from a `NewRun`.

The Core statements bind `values`; the engines' plain SQL (`sqlite_hot`, `postgres_hot`,
the refresh and enqueue paths) is `insert_sql` with each driver's placeholders, and binds
`raw_values` (or `raw_row`), whose instants are microseconds as `schema.Instant` stores
them.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import TYPE_CHECKING, Any

from sqlalchemy import String
from sqlalchemy.dialects import postgresql

from cronlink.records.runs import NewRun, RunState
from cronlink.storable import to_json
from cronlink.store.schema import micros_or_none, runs, to_micros

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from sqlalchemy import Column

_CARRIED = {f.name for f in dataclasses.fields(NewRun)}

COLUMNS: tuple[Column[Any], ...] = tuple(
    c for c in runs.c
    if not c.primary_key and (c.name in _CARRIED or not (c.nullable or c.server_default))
)  # fmt: skip
"""What a new run sets: the columns `NewRun` carries, and those that must have a value and
have no server default. The rest start empty and are set by claims and completions."""
NAMES = tuple(c.name for c in COLUMNS)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


FIXED: dict[str, Any] = {"state": RunState.QUEUED.value, "attempt": 0, "cancel_requested": False}
"""What every new run starts with: literals in the plain SQL, not parameters (binding them
added a fifth to the time of a run's insert on SQLite)."""
BOUND = tuple(name for name in NAMES if name not in FIXED)
raw_row = operator.itemgetter(*BOUND)
"""`raw_values` as a tuple in `BOUND` order, for positional placeholders."""


def values(run: NewRun, now: datetime) -> dict[str, Any]:
    """The new run's value of each of `NAMES`, queued from `now` unless it says when."""
    return _encoded(run) | FIXED | {
        "scheduled_for": run.scheduled_for,
        "enqueued_at": now,
        "not_before": run.not_before or now,
    }  # fmt: skip


def raw_values(run: NewRun, stamp: int) -> dict[str, Any]:
    """The values of `BOUND` as a driver binds them without SQLAlchemy: instants in
    microseconds, `stamp` the enqueueing instant."""
    found = _encoded(run)
    found["scheduled_for"] = micros_or_none(run.scheduled_for)
    found["enqueued_at"] = stamp
    found["not_before"] = stamp if run.not_before is None else to_micros(run.not_before)
    return found


def _encoded(run: NewRun) -> dict[str, Any]:
    return {
        "job": run.job,
        "tier": run.tier.value,
        "reason": run.reason.value,
        "payload": None if run.payload is None else to_json(run.payload),
        "max_attempts": run.max_attempts,
        "overlap": run.overlap.value,
        "dedupe_key": run.dedupe_key,
        "traceparent": run.traceparent,
    }


def insert_sql(
    value: Callable[[Column[Any]], str],
    *,
    first: tuple[str, str] | None = None,
    select_from: str | None = None,
    suffix: str = "",
) -> str:
    """`INSERT INTO runs (NAMES) VALUES (...)`: `FIXED` as literals, each other value
    `value(column)` (a placeholder, or an expression over `select_from`, which makes it
    `INSERT … SELECT … FROM`).

    `first`: a (column, value) set before the others (the id PostgreSQL's firing draws);
    `suffix`: what follows, such as a conflict clause and RETURNING.
    """
    given = [_literal(FIXED[c.name]) if c.name in FIXED else value(c) for c in COLUMNS]
    names = [*([first[0]] if first else []), *NAMES]
    exprs = [*([first[1]] if first else []), *given]
    body = (
        f"VALUES ({', '.join(exprs)})"
        if select_from is None
        else f"SELECT {', '.join(exprs)} FROM {select_from}"
    )
    return f"INSERT INTO runs ({', '.join(names)}) {body} {suffix}".rstrip()


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else str(value)


def pg_type(column: Column[Any]) -> str:
    """The column's type in PostgreSQL's SQL, for the casts of untyped parameters. Text
    is `text`: a cast to `varchar(n)` would cut a longer value instead of refusing it."""
    if isinstance(column.type, String):
        return "text"
    return str(column.type.compile(dialect=_PG))


def sqlite_param(_: Column[Any]) -> str:
    """sqlite3's placeholder of a value of `raw_row` (positional: binding by name cost
    more than building the parameters)."""
    return "?"


def psycopg_param(column: Column[Any]) -> str:
    """psycopg's placeholder of a value of `raw_values`, cast to the column's type."""
    return f"CAST(%({column.name})s AS {pg_type(column)})"
