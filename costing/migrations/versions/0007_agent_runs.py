"""Agent runs from the traffic (issue 14): how each call joined its run (`events.link`), the
clues LLM responses produced, the calls waiting for theirs, and the traces that moved.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_column, ensure_index, ensure_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ensure_: a ledger made by create_all before migrations may have all of it already.
    # Rows already there get link "": they were linked by traceparent or not at all.
    ensure_column("events", sa.Column("link", sa.String(length=16), nullable=False, server_default=""))
    ensure_table(
        "run_clues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("clue", sa.String(length=80), nullable=False),
        sa.Column("tool", sa.String(length=256), nullable=False),
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    ensure_index("ix_run_clues_clue", "run_clues", ["team", "clue"])
    ensure_index("ix_run_clues_trace", "run_clues", ["trace_id"])
    ensure_index("ix_run_clues_ts", "run_clues", ["ts"])
    ensure_table(
        "run_waits",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("clue", sa.String(length=80), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("tool", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", "clue"),
    )
    ensure_index("ix_run_waits_clue", "run_waits", ["team", "clue"])
    ensure_index("ix_run_waits_ts", "run_waits", ["ts"])
    ensure_table(
        "trace_moves",
        sa.Column("old_trace", sa.String(length=32), nullable=False),
        sa.Column("new_trace", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("old_trace"),
    )
    ensure_index("ix_trace_moves_new_trace", "trace_moves", ["new_trace"])
    ensure_index("ix_trace_moves_ts", "trace_moves", ["ts"])


def downgrade() -> None:
    op.drop_table("trace_moves")
    op.drop_table("run_waits")
    op.drop_table("run_clues")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("link")
