"""SQLAlchemy `text()` statements as psycopg's own SQL text, for the plain-psycopg paths."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

if TYPE_CHECKING:
    from sqlalchemy import TextClause

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]


@cache
def sql(statement: TextClause) -> str:
    """A statement as psycopg's own SQL text (`%(name)s` parameters), compiled once."""
    return str(statement.compile(dialect=_DIALECT))
