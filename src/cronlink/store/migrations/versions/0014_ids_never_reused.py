"""SQLite: ids of rows with history are never given again (AUTOINCREMENT).

Without it SQLite gives a new row max(id) + 1: deleting the newest connection handed its
id to the next one, which inherited its events and found its refresh run's dedupe key
taken. AUTOINCREMENT keeps the highest id ever given (in `sqlite_sequence`); SQLite can
only add it by rebuilding the table (Alembic's batch mode, foreign keys off: see
`migrate.rebuildable`).

The highest id given so far is not on record: where the newest rows were deleted, it is
recovered from what still names them (their events, log lines, runs' payloads), so that
no id seen anywhere is given again. PostgreSQL's sequences never go back: nothing to do.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"


def _payload(field: str) -> str:
    return (
        f"SELECT max(CAST(json_extract(payload, '$.{field}') AS INTEGER)) FROM runs "
        "WHERE json_valid(payload)"
    )


SEEN = {
    "runs": [
        "SELECT max(run_id) FROM fires",
        "SELECT max(run_id) FROM run_logs",
        "SELECT max(run_id) FROM automation_events",
    ],
    "run_logs": [],
    "connections": [
        "SELECT max(connection_id) FROM connection_events",
        "SELECT max(connection_id) FROM automations",
        _payload("connection_id"),
    ],
    "connection_events": [],
    "automations": ["SELECT max(automation_id) FROM automation_events", _payload("automation_id")],
    "automation_events": [_payload("event_id")],
    "audit_log": [],
    "api_tokens": [
        "SELECT max(CAST(substr(actor, 7) AS INTEGER)) FROM audit_log WHERE actor LIKE 'token:%'"
    ],
}
"""Per table: queries for the highest of its ids that other rows name."""


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    db = op.get_bind()
    for table, seen in SEEN.items():
        # Batch mode reflects the indexes, partial ones with their WHERE, and writes them
        # back (the migration test compares them).
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        queries = [f"SELECT max(id) FROM {table}", *seen]
        highest = max(db.exec_driver_sql(query).scalar() or 0 for query in queries)
        db.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        db.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest)
        )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table in SEEN:
        with op.batch_alter_table(table, recreate="always"):
            pass
