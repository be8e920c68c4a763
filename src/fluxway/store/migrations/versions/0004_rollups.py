"""Usage rollups (minute, hour and day totals by key, team, model, provider, status and tag) and the
records' tags; the rollups are filled from the records already stored.

Revision ID: 0004_rollups
Revises: 0003_bodies
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_rollups"
down_revision = "0003_bodies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("tags", sa.String(512), nullable=True))
    op.create_table(
        "usage_rollups",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("dim", sa.String(16), nullable=False),
        sa.Column("grain", sa.Integer, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Double, nullable=False),
        sa.Column("latency_ms_sum", sa.Double, nullable=False),
        sa.Column("latency_count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("scope", "dim", "grain", "bucket", "value", name="pk_usage_rollups"),
    )
    from fluxway.store.rollups import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("usage_rollups")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("tags")
