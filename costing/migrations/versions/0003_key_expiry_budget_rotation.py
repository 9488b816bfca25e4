"""Keys: an expiry, a monthly budget of their own, and the secret a rotation replaced.

Every column is nullable (a key without them behaves as before), so ledgers with keys upgrade
in place. `previous_hash` is indexed: a replica that meets an unknown secret looks it up by
either hash (costing/keys.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 11:07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_column, ensure_index

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ensure_: a ledger made by create_all before migrations may have them already.
    ensure_column("keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    ensure_column("keys", sa.Column("budget_pico", sa.BigInteger(), nullable=True))
    ensure_column("keys", sa.Column("previous_hash", sa.String(length=64), nullable=True))
    ensure_column("keys", sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True))
    ensure_index("ix_keys_previous_hash", "keys", ["previous_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("keys", schema=None) as batch_op:
        batch_op.drop_index("ix_keys_previous_hash")
        batch_op.drop_column("previous_valid_until")
        batch_op.drop_column("previous_hash")
        batch_op.drop_column("budget_pico")
        batch_op.drop_column("expires_at")
