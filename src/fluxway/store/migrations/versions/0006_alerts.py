"""Alert state per rule and subject, and the history of alert transitions.

Revision ID: 0006_alerts
Revises: 0004_rollups
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_alerts"
down_revision = "0004_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("threshold", sa.Double, nullable=True),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("resolved_at", sa.Double, nullable=True),
        sa.Column("checked_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("rule", "subject", name="pk_alert_states"),
    )
    op.create_table(
        "alert_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("value", sa.Double, nullable=True),
        sa.Column("threshold", sa.Double, nullable=True),
    )
    op.create_index("ix_alert_history_rule", "alert_history", ["rule", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_history_rule", table_name="alert_history")
    op.drop_table("alert_history")
    op.drop_table("alert_states")
