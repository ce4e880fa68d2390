"""Schema migrations with Alembic, and the refusal to touch a database from a newer cronlink."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect

from cronlink.errors import CorruptDatabaseError, SchemaTooNewError
from cronlink.progress import Progress, silent

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

_SCRIPTS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r'^revision = "(\w+)"$', re.MULTILINE)
_FOLLOWS = re.compile(r'^down_revision = "(\w+)"$', re.MULTILINE)


@functools.cache
def revisions() -> dict[str, str | None]:
    """Each migration's revision and the one it follows (None for the first), read from
    the migration files as text: opening a database at head needs no Alembic (11 MiB)."""
    found: dict[str, str | None] = {}
    for script in (_SCRIPTS / "versions").glob("*.py"):
        text = script.read_text()
        revision, follows = _REVISION.search(text), _FOLLOWS.search(text)
        assert revision is not None, f"{script.name} states no revision"
        found[revision[1]] = follows[1] if follows else None
    return found


def head_revision() -> str:
    """The revision no other follows: the newest."""
    (head,) = set(revisions()) - set(revisions().values())
    return head


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return None if revision is None else str(revision)


def behind(connection: Connection) -> bool:
    """Whether the schema is older than this cronlink's (a store opened without
    migrating: a new database is behind too)."""
    return current_revision(connection) != head_revision()


def check_not_newer(connection: Connection) -> None:
    """Refuse a schema this cronlink does not know: it was written by a newer one."""
    revision = current_revision(connection)
    if revision is not None and revision not in revisions():
        raise SchemaTooNewError(
            f"the database is at schema revision {revision!r}, which this cronlink does not "
            f"know (newest known: {head_revision()!r}); upgrade cronlink, the database was "
            "left untouched"
        )


def upgrade(connection: Connection, revision: str = "head", *, progress: Progress = silent) -> None:
    """Bring the schema to `revision`, the newest by default (a no-op when it is there
    already), telling `progress` as each migration is applied. On SQLite, open the
    transaction inside `rebuildable`."""
    check_not_newer(connection)
    before = current_revision(connection)
    if before == (head_revision() if revision == "head" else revision):
        return
    # Imported here: defers Alembic to the one call that changes the schema.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    steps = _steps(config, before, revision)
    task = "upgrading the schema"
    progress(task, 0, steps)
    applied = iter(range(1, steps + 1))
    config.attributes["on_version_apply"] = lambda **_: progress(task, next(applied, steps), steps)
    command.upgrade(config, revision)
    if current_revision(connection) != before:
        try:
            check_references(connection)
        except CorruptDatabaseError as error:
            raise CorruptDatabaseError(f"{error}; the upgrade was rolled back") from None


def _steps(config: Config, before: str | None, revision: str) -> int:
    """How many migrations lie between `before` (None: none applied) and `revision`."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(config)
    return len(list(scripts.iterate_revisions(revision, before or "base")))


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
