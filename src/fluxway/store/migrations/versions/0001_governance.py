"""Governance: teams, virtual keys, usage records.

Revision ID: 0001_governance
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_governance"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("budget_usd", sa.Double, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("owner", sa.String(256), nullable=True),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("team", sa.String(128), nullable=True),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("tpm", sa.Integer, nullable=True),
        sa.Column("model_limits", sa.JSON, nullable=True),
        sa.Column("budget_usd", sa.Double, nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
        sa.Column("expires_at", sa.Double, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_virtual_keys_key_hash"),
    )
    op.create_index("ix_virtual_keys_prefix", "virtual_keys", ["prefix"])
    op.create_index("ix_virtual_keys_team", "virtual_keys", ["team"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("team", sa.String(128), nullable=True),
        sa.Column("endpoint", sa.String(32), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("upstream_model", sa.String(256), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Double, nullable=False),
        sa.Column("price_known", sa.Boolean, nullable=False),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Double, nullable=True),
        sa.Column("ttft_ms", sa.Double, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache", sa.String(8), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_usage_key_time", "usage_records", ["key_id", "created_at"])
    op.create_index("ix_usage_team_time", "usage_records", ["team", "created_at"])
    op.create_index("ix_usage_time", "usage_records", ["created_at", "id"])
    op.create_index("ix_usage_request", "usage_records", ["request_id"])
    op.create_index("ix_usage_model", "usage_records", ["model"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("virtual_keys")
    op.drop_table("teams")
