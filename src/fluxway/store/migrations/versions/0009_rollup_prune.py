"""An index on usage_rollups (grain, bucket), so that old minute rows are pruned without a scan.

Revision ID: 0009_rollup_prune
Revises: 0006_alerts
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0009_rollup_prune"
down_revision = "0006_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_rollups_grain_bucket", "usage_rollups", ["grain", "bucket"])


def downgrade() -> None:
    op.drop_index("ix_rollups_grain_bucket", table_name="usage_rollups")
