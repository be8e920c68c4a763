"""Files and batches of the pass-through surface: each upstream object's owning key and provider.

Revision ID: 0008_files
Revises: 0009_rollup_prune
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_files"
down_revision = "0009_rollup_prune"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "surface_objects",
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("object", sa.JSON, nullable=True),
        sa.Column("meta", sa.JSON, nullable=True),
        sa.Column("usage_recorded_at", sa.Double, nullable=True),
    )
    op.create_index("ix_surface_objects_owner", "surface_objects", ["key_id", "kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_surface_objects_owner", table_name="surface_objects")
    op.drop_table("surface_objects")
