"""Usage token counts are 64-bit (an upstream may report more than 2^31 tokens).

Revision ID: 0002_bigint_tokens
Revises: 0001_governance
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_bigint_tokens"
down_revision = "0001_governance"
branch_labels = None
depends_on = None

_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens")


def upgrade() -> None:
    # SQLite's INTEGER already holds 64 bits: only PostgreSQL's columns change.
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _COLUMNS:
        op.alter_column("usage_records", name, type_=sa.BigInteger, existing_type=sa.Integer, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _COLUMNS:
        op.alter_column("usage_records", name, type_=sa.Integer, existing_type=sa.BigInteger, existing_nullable=False)
