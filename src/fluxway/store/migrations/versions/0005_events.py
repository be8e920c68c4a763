"""The events outbox: every emitted event once, and per sink the events not yet delivered to it.

Revision ID: 0005_events
Revises: 0008_files
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_events"
down_revision = "0008_files"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("id", name="uq_event_outbox_id"),
    )
    op.create_index("ix_event_outbox_time", "event_outbox", ["created_at"])
    op.create_table(
        "event_deliveries",
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Double, nullable=False),
        sa.Column("lease_until", sa.Double, nullable=True),
        sa.Column("owner", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("sink", "seq", name="pk_event_deliveries"),
    )


def downgrade() -> None:
    op.drop_table("event_deliveries")
    op.drop_index("ix_event_outbox_time", table_name="event_outbox")
    op.drop_table("event_outbox")
