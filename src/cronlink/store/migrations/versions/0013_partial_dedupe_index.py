"""Dedupe keys in a partial unique index: only the runs that have one.

Most runs have no dedupe key. As a unique constraint, the column gave every run an entry in
its index, and every claim and completion another (each moves the row): an index as large
as the primary key's, for the few runs that use it. Without them, PostgreSQL spends about
1-2 us less per no-op run (of about 31 us, bench/queue_bench.py: within its noise).

SQLite cannot drop a table's inline constraint, so the runs table is rebuilt (Alembic's batch
mode), which needs foreign keys off: see `migrate.rebuildable`.

Revision ID: 0013
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0010"

KEYED = "dedupe_key IS NOT NULL"
# SQLite's inline constraint has no name: the rebuild names it to drop it.
_NAMED = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        with op.batch_alter_table("runs", recreate="always", naming_convention=_NAMED) as runs:
            runs.drop_constraint("uq_runs_dedupe_key", type_="unique")
    else:
        op.drop_constraint("runs_dedupe_key_key", "runs", type_="unique")
    op.create_index(
        "ux_runs_dedupe_key", "runs", ["dedupe_key"], unique=True,
        sqlite_where=sa.text(KEYED), postgresql_where=sa.text(KEYED),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ux_runs_dedupe_key", "runs")
    with op.batch_alter_table("runs") as runs:
        runs.create_unique_constraint("runs_dedupe_key_key", ["dedupe_key"])
