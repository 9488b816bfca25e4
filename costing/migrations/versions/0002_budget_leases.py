"""Budget leases: each replica's share of a budget beyond the ledger, so budgets hold fleet-wide.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ensure_: a ledger made by create_all before migrations may have the table already.
    ensure_table(
        "budget_leases",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("replica", sa.String(length=32), nullable=False),
        sa.Column("committed_pico", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period", "replica"),
    )


def downgrade() -> None:
    op.drop_table("budget_leases")
