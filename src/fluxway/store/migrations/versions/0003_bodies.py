"""Usage records keep the call's request and response bodies, and why they are missing.

Revision ID: 0003_bodies
Revises: 0002_bigint_tokens
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_bodies"
down_revision = "0002_bigint_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: an instant change on SQLite and PostgreSQL alike.
    op.add_column("usage_records", sa.Column("request_body", sa.Text, nullable=True))
    op.add_column("usage_records", sa.Column("response_body", sa.Text, nullable=True))
    op.add_column("usage_records", sa.Column("body_status", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("body_status")
        batch.drop_column("response_body")
        batch.drop_column("request_body")
