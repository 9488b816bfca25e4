"""Billing dimensions on events: audio, image, 1-hour cache writes, server tool uses, the
service tier and context tier billed, the cost by dimension and a usage flag (issues 20, 21).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:50
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTS = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "output_image_tokens",
    "web_search_calls",
    "file_search_calls",
    "code_interpreter_calls",
    "long_context_above",
)
DETAILED = "cost_detail != '' OR usage_flag != ''"  # as in costing/tables.py when written
TEXTS = (("service_tier", 16), ("cost_detail", 512), ("usage_flag", 32))


def upgrade() -> None:
    # Rows already there get 0 and "": they were billed as text, at the default tier. A ledger
    # made by create_all before migrations (completed by the baseline) may have them already.
    insp = None if context.is_offline_mode() else sa.inspect(op.get_bind())
    have = {c["name"] for c in insp.get_columns("events")} if insp is not None else set()
    for name in COUNTS:
        if name not in have:
            op.add_column("events", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    for name, length in TEXTS:
        if name not in have:
            op.add_column("events", sa.Column(name, sa.String(length=length), nullable=False, server_default=""))
    indexes = {i["name"] for i in insp.get_indexes("events")} if insp is not None else set()
    if "ix_events_detailed" not in indexes:
        where = sa.text(DETAILED)
        op.create_index("ix_events_detailed", "events", ["charge_period"], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index("ix_events_detailed", table_name="events")
    with op.batch_alter_table("events") as batch:
        for name, _ in reversed(TEXTS):
            batch.drop_column(name)
        for name in reversed(COUNTS):
            batch.drop_column(name)
