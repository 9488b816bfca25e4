"""Rate limits: each replica's count and lease per window of a limit, and keys' own limits.

`keys.limits` is nullable (a key without it has no limits of its own), so ledgers with keys
upgrade in place.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_column, ensure_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ensure_: a ledger made by create_all before migrations may have them already.
    ensure_table(
        "rate_leases",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("replica", sa.String(length=32), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("committed", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "metric", "bucket", "replica"),
    )
    ensure_column("keys", sa.Column("limits", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_column("limits")
    op.drop_table("rate_leases")
