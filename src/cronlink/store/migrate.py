"""Schema migrations with Alembic, and the refusal to touch a database from a newer cronlink."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from cronlink.errors import CorruptDatabaseError, SchemaTooNewError

if TYPE_CHECKING:
    from sqlalchemy import Connection

_SCRIPTS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def check_not_newer(connection: Connection) -> None:
    """Refuse a schema this cronlink does not know: it was written by a newer one."""
    revision = current_revision(connection)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if revision is not None and revision not in known:
        raise SchemaTooNewError(
            f"the database is at schema revision {revision!r}, which this cronlink does not "
            f"know (newest known: {head_revision()!r}); upgrade cronlink, the database was "
            "left untouched"
        )


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema to `revision`, the newest by default (a no-op when it is there
    already). On SQLite, open the transaction inside `rebuildable`."""
    check_not_newer(connection)
    before = current_revision(connection)
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    if current_revision(connection) != before:
        try:
            check_references(connection)
        except CorruptDatabaseError as error:
            raise CorruptDatabaseError(f"{error}; the upgrade was rolled back") from None


@contextmanager
def rebuildable(connection: Connection) -> Iterator[None]:
    """SQLite, around a transaction that migrates: foreign keys off, so that a migration can
    rebuild a table that others refer to. Alembic's batch mode rebuilds by copy, drop and
    rename, and dropping a parent with foreign keys on fails. The switch is a no-op inside a
    transaction, and the references are checked before the commit instead
    (`check_references`): SQLite's own procedure for such changes (ALTER TABLE)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys = ON")


def check_references(connection: Connection) -> None:
    """SQLite: refuse rows that refer to a missing row (a foreign key broken while foreign
    keys were off); the caller rolls back."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise CorruptDatabaseError(
            f"rows that refer to missing rows: {len(broken)} (the first: {table} row {rowid}, "
            f"to {parent})"
        )


def refuse_foreign(connection: Connection, where: str) -> None:
    """Refuse a database that holds tables but no cronlink schema, before touching it."""
    tables = set(inspect(connection).get_table_names())
    if tables and "alembic_version" not in tables:
        raise CorruptDatabaseError(
            f"{where} holds tables of another application ({', '.join(sorted(tables)[:3])}…), "
            "not cronlink's; it was left untouched"
        )
