"""The only place with SQL: `Store` and its engines, chosen by URL scheme.

How the verbs are built, one rule for all of them:

- SQL is written as plain functions of a SQLAlchemy connection that run inside the
  caller's transaction: `queries.py` for runs and schedules, `<domain>_queries.py` for a
  domain whose SQL outgrows its sub-store's module (or that the hot paths share), the
  sub-store's own module otherwise.
- A verb is one transaction (`Store.transact`). A verb that is exactly one such function
  is declared, not written, in `Store` and in every sub-store alike:
  `get = reads(automation_queries.get_automation)` (`verbs.py`); its signature and
  docstring are the function's. A method is written out only when it adds something to
  its SQL: skipping an empty transaction, or naming an engine's own verb in its domain
  (`store.connections.save_refresh`, `store.audit.enqueue`).
- `Store` (base.py) holds the verbs both engines run alike; an engine (`sqlite.py`,
  `postgres.py`) holds only what differs: connections, locking and its hot paths, as plain
  driver SQL (`sqlite_*.py`, `postgres_*.py`).
"""

from __future__ import annotations

from cronlink.errors import ConfigError
from cronlink.store.base import (
    ClaimRequest,
    Completion,
    Done,
    Outcome,
    RunFilter,
    ScheduleAdvance,
    Store,
    Tick,
)

__all__ = [
    "ClaimRequest",
    "Completion",
    "Done",
    "Outcome",
    "RunFilter",
    "ScheduleAdvance",
    "Store",
    "Tick",
    "store_for",
]


def store_for(url: str) -> Store:
    """The store for a database URL: `sqlite:///path` or `postgresql://user@host/db`.

    Engines are imported on demand: a SQLite deployment never loads a PostgreSQL driver.
    """
    if url.startswith("sqlite:"):
        # Imported here: defers the engine, so that a deployment loads only its own driver.
        from cronlink.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        # Imported here: defers psycopg, which a SQLite deployment never loads.
        from cronlink.store.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split(":", 1)[0]
    raise ConfigError(
        f"database URL scheme {scheme!r} is not supported; use sqlite:///PATH or "
        "postgresql://USER@HOST/DATABASE"
    )
