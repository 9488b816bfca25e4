"""Credit grants made through the admin API (the config's `credits:` are not stored).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:50
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ensure_: a ledger made by create_all before migrations may have the table already.
    ensure_table(
        "credit_grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("amount_pico", sa.BigInteger(), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("recurring", sa.String(length=16), nullable=False),
        sa.Column("rollover_max_pico", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("credit_grants")
