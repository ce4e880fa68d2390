"""Connection names: an owner's own handle on a connection (`hubspot-main`), which an
automation's steps name instead of an id; unique per owner, optional.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"

NAMED = "name IS NOT NULL"


def upgrade() -> None:
    # A nullable column with no default: both engines add it in place (no rebuild).
    op.add_column("connections", sa.Column("name", sa.String(64)))
    op.create_index(
        "ux_connections_owner_name", "connections", ["owner", "name"], unique=True,
        sqlite_where=sa.text(NAMED), postgresql_where=sa.text(NAMED),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ux_connections_owner_name", "connections")
    with op.batch_alter_table("connections") as connections:
        connections.drop_column("name")
