"""`mcp_tools` on keys and teams: the MCP tools (globs over `<server>.<tool>`) a key may list and call.

Revision ID: 0010_mcp_tools
Revises: 0007_responses
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_mcp_tools"
down_revision = "0007_responses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("mcp_tools", sa.JSON, nullable=True))
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("mcp_tools", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("mcp_tools")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("mcp_tools")
