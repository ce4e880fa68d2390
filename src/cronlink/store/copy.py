"""Copy a whole cronlink database to another engine: the move from SQLite to PostgreSQL.

Every table of `schema.metadata` is copied row for row, parents before children, so a
table added later comes along without a change here. Primary keys are kept (run ids are
what users, logs and the ledger refer to), and so is the highest id each table ever gave,
even to rows deleted since: the target's next ids come after it, never again one that
dedupe keys or payloads may still name.

The source is read in one read-only snapshot, in batches, so a million runs never sit in
memory at once. The target is written in one transaction (migration, the rows it held when
`force` replaces them, the copy, the ids spent): a failure at any point leaves it as it was.

Synchronous on purpose: the command line waits for the copy and nothing else runs, and a
Ctrl-C then stops the copy at once and rolls the target back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import column as column_
from sqlalchemy import create_engine, delete, event, func, insert, inspect, select, text
from sqlalchemy import table as table_
from sqlalchemy.dialects.postgresql import REGCLASS
from sqlalchemy.exc import DBAPIError

from cronlink.errors import (
    ConfigError,
    CorruptDatabaseError,
    SchemaTooNewError,
    StoreError,
    first_line,
)
from cronlink.progress import Progress, silent
from cronlink.scrubbing import without_password
from cronlink.store import migrate, store_for
from cronlink.store.schema import metadata
from cronlink.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Column, ColumnElement, Connection, Engine, Row, Table
    from sqlalchemy.sql.functions import Function

BATCH = 5_000
"""Rows per read and per insert: large enough to amortize round trips, small in memory."""

SNAPSHOT_WARNING = (
    "stop every cronlink role that uses the source before copying: the copy is a snapshot "
    "of the source as it is when the copy starts, and what they write afterwards is lost"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CopyReport:
    source: str
    target: str
    """Both URLs without their passwords."""
    rows: dict[str, int]
    """Rows copied, by table, in the order they were copied."""
    replaced: int
    """Rows the target held before, deleted because of `force`."""
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class _Database:
    name: str
    """The URL for messages: no password."""
    engine_url: str
    path: Path | None = None
    """The file, for SQLite."""


def copy_database(
    source_url: str,
    target_url: str,
    *,
    force: bool = False,
    batch: int = BATCH,
    progress: Progress = silent,
) -> CopyReport:
    """Copy every cronlink row of `source_url` into `target_url`, migrated to this version,
    telling `progress` how far each table has got.

    Refuses a source not at this cronlink's schema revision, the source itself as target,
    and a target that holds cronlink rows unless `force`, which replaces them.
    """
    started = time.monotonic()
    source, target = _database(source_url), _database(target_url)
    if _same(source, target):
        raise ConfigError(f"--from and --to are the same database ({source.name})")
    if source.path is not None and not source.path.is_file():
        raise StoreError(f"source {source.name}: {source.path} does not exist; nothing copied")
    new_file = target.path is not None and not target.path.exists()
    try:
        rows, replaced = _copy(source, target, force, batch, progress)
    except BaseException:
        if new_file and target.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        raise
    return CopyReport(
        source=source.name,
        target=target.name,
        rows=rows,
        replaced=replaced,
        seconds=round(time.monotonic() - started, 3),
    )


def _copy(
    source: _Database, target: _Database, force: bool, batch: int, progress: Progress
) -> tuple[dict[str, int], int]:
    source_engine, target_engine = _engine(source), _engine(target)
    try:
        with _transaction(source_engine, source, read_only=True) as reader:
            _check_source(reader, source.name)
            with _transaction(target_engine, target, read_only=False) as writer:
                if _identity(reader) == _identity(writer):
                    raise ConfigError(f"--from and --to are the same database ({source.name})")
                _prepare_target(writer, target.name)
                replaced = _clear_target(writer, target.name, force)
                rows = {t.name: _copy_table(reader, writer, t, batch, progress) for t in _tables()}
                spent = _spent_ids(reader)
                _spend_ids(writer, spent)
        _analyze(target_engine)
    except (DBAPIError, CorruptDatabaseError) as error:
        cause = first_line(error.orig) if isinstance(error, DBAPIError) else str(error)
        raise StoreError(
            f"copying {source.name} to {target.name} failed ({cause}); "
            "the target was left as it was"
        ) from None
    finally:
        source_engine.dispose()
        target_engine.dispose()
    return rows, replaced


def _analyze(engine: Engine) -> None:
    """Give the planner the copied tables' statistics at once: before autovacuum gets to
    them, a due-automations query over 100,000 fresh rows takes 1.8 s instead of 1 ms."""
    if engine.dialect.name != "postgresql":
        return  # SQLite's planner does well on these tables without statistics
    with engine.connect() as c:
        c.execute(text("ANALYZE " + ", ".join(t.name for t in _tables())))
        c.commit()


def _tables() -> list[Table]:
    """Parents before children."""
    return list(metadata.sorted_tables)


# -- the two databases -----------------------------------------------------------------


def _database(url: str) -> _Database:
    """The stores' own reading of `url` (and their error for an unknown scheme)."""
    store = store_for(url)
    if isinstance(store, SQLiteStore):
        return _Database(name=url, engine_url=f"sqlite:///{store.path}", path=store.path)
    return _Database(
        name=without_password(url), engine_url=f"postgresql+psycopg://{url.split('://', 1)[1]}"
    )


def _same(a: _Database, b: _Database) -> bool:
    if a.path is not None and b.path is not None:
        return a.path.resolve() == b.path.resolve()
    return a.engine_url == b.engine_url


def _identity(c: Connection) -> tuple[Any, ...]:
    """Where the connection's tables live, to catch one database behind two URLs."""
    if c.dialect.name == "sqlite":
        return ("sqlite", c.exec_driver_sql("PRAGMA database_list").fetchall())
    row = c.exec_driver_sql(
        "SELECT current_database(), current_schema(), inet_server_addr()::text, inet_server_port()"
    ).one()
    return ("postgresql", *row)


def _engine(database: _Database) -> Engine:
    if database.path is None:
        return create_engine(database.engine_url)
    # The driver's own transaction handling is off: `_transaction` says BEGIN itself, as
    # the SQLite store does, so that the write lock is taken up front (BEGIN IMMEDIATE).
    engine = create_engine(database.engine_url, connect_args={"isolation_level": None})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 10000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


_BEGIN = {
    ("sqlite", True): "BEGIN",
    ("sqlite", False): "BEGIN IMMEDIATE",
    ("postgresql", True): "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    ("postgresql", False): "BEGIN",
}
"""A read sees one snapshot from its first statement on (SQLite's WAL gives that to any
read transaction; PostgreSQL to REPEATABLE READ)."""


@contextmanager
def _transaction(engine: Engine, database: _Database, *, read_only: bool) -> Iterator[Connection]:
    role = "source" if read_only else "target"
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except DBAPIError as error:
        raise StoreError(f"cannot open {role} {database.name}: {first_line(error.orig)}") from None
    with conn, contextlib.nullcontext() if read_only else migrate.rebuildable(conn):
        conn.exec_driver_sql(_BEGIN[engine.dialect.name, read_only])
        try:
            yield conn
            if not read_only:
                migrate.check_references(conn)
        except BaseException:
            # A connection lost mid-copy has rolled back already; keep the first error.
            with contextlib.suppress(DBAPIError):
                conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


# -- checks ----------------------------------------------------------------------------


def _check_source(c: Connection, name: str) -> None:
    if "alembic_version" not in inspect(c).get_table_names():
        raise StoreError(f"source {name} is not a cronlink database; nothing copied")
    try:
        migrate.check_not_newer(c)
    except SchemaTooNewError as error:
        raise SchemaTooNewError(f"source {name}: {error}") from None
    revision, head = migrate.current_revision(c), migrate.head_revision()
    if revision != head:
        raise StoreError(
            f"source {name} is at schema revision {revision!r}, this cronlink's is {head!r}: "
            f"run `cronlink db upgrade --database-url SOURCE` on the source first; nothing copied"
        )


def _prepare_target(c: Connection, name: str) -> None:
    """Refuse another application's tables, as opening a store does; then migrate."""
    migrate.refuse_foreign(c, f"target {name}")
    try:
        migrate.upgrade(c)
    except SchemaTooNewError as error:
        raise SchemaTooNewError(f"target {name}: {error}") from None


def _clear_target(c: Connection, name: str, force: bool) -> int:
    """Delete the target's cronlink rows when `force`; refuse to copy over them otherwise."""
    held = {t.name: c.execute(select(func.count()).select_from(t)).scalar_one() for t in _tables()}
    total = sum(held.values())
    if total and not force:
        counts = ", ".join(f"{table} {n:,}" for table, n in held.items() if n)
        raise StoreError(
            f"target {name} already holds {total:,} cronlink rows ({counts}); nothing copied "
            "(--force replaces them)"
        )
    if total:
        for table in reversed(_tables()):
            c.execute(delete(table))
    return total


# -- copying ---------------------------------------------------------------------------


def _copy_table(
    source: Connection, target: Connection, table: Table, batch: int, progress: Progress
) -> int:
    task = f"copying {table.name}"
    total = source.execute(select(func.count()).select_from(table)).scalar_one()
    progress(task, 0, total)
    copied = 0
    result = source.execute(select(table).execution_options(yield_per=batch))
    write = _copy_into if target.dialect.name == "postgresql" else _insert_into
    for rows in result.partitions():
        write(target, table, rows)
        copied += len(rows)
        progress(task, copied, total)
    return copied


def _insert_into(c: Connection, table: Table, rows: Sequence[Row[Any]]) -> None:
    c.execute(insert(table), [row._asdict() for row in rows])


def _copy_into(c: Connection, table: Table, rows: Sequence[Row[Any]]) -> None:
    """PostgreSQL's COPY: an INSERT per row, even pipelined, is several times slower."""
    binds = [column.type.bind_processor(c.dialect) for column in table.c]
    preparer = c.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(column.name) for column in table.c)
    statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN"
    raw = c.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([v if b is None else b(v) for b, v in zip(binds, row, strict=True)])
    except c.dialect.loaded_dbapi.Error as error:
        # The driver's own error, as SQLAlchemy would have wrapped it: one kind to catch.
        raise DBAPIError(statement, None, error) from error


def _spent_ids(c: Connection) -> dict[str, int]:
    """The highest id each table with ids has ever given: more than its newest row's when
    the newest rows were deleted."""
    return {t.name: _spent(c, t) for t in _tables() if t.autoincrement_column is not None}


def _spend_ids(c: Connection, spent: dict[str, int]) -> None:
    """Move each table's next id past those the source gave and those the target gave:
    a copy never hands out an id again (`schema.NEVER_REUSED`)."""
    for table in _tables():
        column = table.autoincrement_column
        if column is None:
            continue
        highest = max(spent[table.name], _spent(c, table))
        if c.dialect.name == "postgresql":
            # Called: a sequence that has given `highest` (its last value is on record),
            # or one that has given nothing yet and starts at 1.
            given = max(highest, 1), highest > 0
            c.execute(select(func.setval(_sequence(c, table, column), *given)))
        else:
            c.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
            c.exec_driver_sql(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table.name, highest)
            )


def _spent(c: Connection, table: Table) -> int:
    column = table.autoincrement_column
    assert column is not None
    given: ColumnElement[Any]
    if c.dialect.name == "postgresql":
        given = func.pg_sequence_last_value(_sequence(c, table, column).cast(REGCLASS))
    else:
        given = (
            select(column_("seq")).select_from(table_("sqlite_sequence"))
            .where(column_("name") == table.name).scalar_subquery()
        )  # fmt: skip
    newest = select(func.max(column)).scalar_subquery()
    given_id, newest_id = c.execute(select(func.coalesce(given, 0), func.coalesce(newest, 0))).one()
    return max(int(given_id), int(newest_id))


def _sequence(c: Connection, table: Table, column: Column[Any]) -> Function[Any]:
    return func.pg_get_serial_sequence(
        c.dialect.identifier_preparer.format_table(table), column.name
    )
