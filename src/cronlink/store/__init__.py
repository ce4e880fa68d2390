"""The only place with SQL: `Store` and its engines, chosen by URL scheme."""

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
