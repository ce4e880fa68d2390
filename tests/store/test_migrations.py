"""Alembic migrations produce exactly the schema the code declares, on both engines."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine

from cronlink.store import migrate
from cronlink.store.schema import metadata
from tests.postgres import fresh_schema


def check(engine: Engine) -> None:
    with engine.begin() as conn:
        migrate.upgrade(conn)
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert migrate.current_revision(conn) == migrate.head_revision()
        migrate.upgrade(conn)  # a second upgrade is a no-op
    engine.dispose()


def test_migrations_match_the_declared_schema_on_sqlite(tmp_path: Path) -> None:
    check(create_engine(f"sqlite:///{tmp_path / 'm.db'}"))


def test_migrations_match_the_declared_schema_on_postgres() -> None:
    with fresh_schema() as url:
        check(create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)))
