"""Inserting a new run, written once for every path that queues one: its columns, taken
from the `runs` table, and their values, taken from a `NewRun`.

The Core statements bind `values`; the engines' plain SQL (`sqlite_hot`, `postgres_hot`,
the refresh and enqueue paths) is `insert_sql` with each driver's placeholders, and binds
`raw_values`, whose instants are microseconds as `schema.Instant` stores them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import String
from sqlalchemy.dialects import postgresql

from cronlink.records import NewRun, RunState
from cronlink.storable import to_json
from cronlink.store.schema import Instant, runs, to_micros

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
_INSTANTS = tuple(c.name for c in COLUMNS if isinstance(c.type, Instant))
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def values(run: NewRun, now: datetime) -> dict[str, Any]:
    """The new run's value of each of `NAMES`, queued from `now` unless it says when."""
    return {
        "job": run.job,
        "tier": run.tier.value,
        "reason": run.reason.value,
        "state": RunState.QUEUED.value,
        "payload": None if run.payload is None else to_json(run.payload),
        "scheduled_for": run.scheduled_for,
        "enqueued_at": now,
        "not_before": run.not_before or now,
        "attempt": 0,
        "max_attempts": run.max_attempts,
        "overlap": run.overlap.value,
        "dedupe_key": run.dedupe_key,
        "cancel_requested": False,
    }


def raw_values(run: NewRun, now: datetime) -> dict[str, Any]:
    """`values` as a driver binds them without SQLAlchemy: instants in microseconds."""
    found = values(run, now)
    for name in _INSTANTS:
        if found[name] is not None:
            found[name] = to_micros(found[name])
    return found


def insert_sql(
    value: Callable[[Column[Any]], str],
    *,
    first: tuple[str, str] | None = None,
    select_from: str | None = None,
    suffix: str = "",
) -> str:
    """`INSERT INTO runs (NAMES) VALUES (...)`, each value `value(column)` (a placeholder,
    or an expression over `select_from`, which makes it `INSERT … SELECT … FROM`).

    `first`: a (column, value) set before the others (the id PostgreSQL's firing draws);
    `suffix`: what follows, such as a conflict clause and RETURNING.
    """
    names = [*([first[0]] if first else []), *NAMES]
    exprs = [*([first[1]] if first else []), *(value(c) for c in COLUMNS)]
    body = (
        f"VALUES ({', '.join(exprs)})"
        if select_from is None
        else f"SELECT {', '.join(exprs)} FROM {select_from}"
    )
    return f"INSERT INTO runs ({', '.join(names)}) {body} {suffix}".rstrip()


def pg_type(column: Column[Any]) -> str:
    """The column's type in PostgreSQL's SQL, for the casts of untyped parameters. Text
    is `text`: a cast to `varchar(n)` would cut a longer value instead of refusing it."""
    if isinstance(column.type, String):
        return "text"
    return str(column.type.compile(dialect=_PG))


def sqlite_param(column: Column[Any]) -> str:
    """sqlite3's placeholder of a value of `raw_values`."""
    return f":{column.name}"


def psycopg_param(column: Column[Any]) -> str:
    """psycopg's placeholder of a value of `raw_values`, cast to the column's type."""
    return f"CAST(%({column.name})s AS {pg_type(column)})"
