"""Alembic migrations produce exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from cronlink.store import migrate
from cronlink.store.schema import metadata


def test_migrations_match_the_declared_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        migrate.upgrade(conn)
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert migrate.current_revision(conn) == migrate.head_revision()
    engine.dispose()
