"""Baseline: the ledger as it was when migrations began.

Completes a ledger made before migrations existed (tables but no alembic_version) instead of
failing on it: see costing/migrations/ops.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 03:20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from meterline.costing.migrations.ops import ensure_index, ensure_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    ensure_table(
        "events",
        sa.Column("call_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charge_period", sa.String(length=7), nullable=False),
        sa.Column("adjustment", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("cost_center", sa.String(length=128), nullable=False),
        sa.Column("key_team", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=256), nullable=False),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("tool", sa.String(length=256), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_pico", sa.BigInteger(), nullable=False),
        sa.Column("priced", sa.Boolean(), nullable=False),
        sa.Column("price_version", sa.String(length=256), nullable=False),
        sa.Column("usage_source", sa.String(length=16), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_call_id", sa.String(length=32), nullable=False),
        sa.Column("tags", sa.String(length=1024), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("request_bytes", sa.BigInteger(), nullable=False),
        sa.Column("response_bytes", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("call_id"),
    )
    ensure_index("ix_events_parent_span", "events", ["parent_span_id"], unique=False)
    ensure_index(
        "ix_events_period", "events", ["charge_period", "department", "team"], unique=False
    )
    ensure_index("ix_events_trace", "events", ["trace_id"], unique=False)
    ensure_index("ix_events_ts", "events", ["ts"], unique=False)
    ensure_table(
        "keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("team", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("models", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    ensure_index("ix_keys_updated_at", "keys", ["updated_at"], unique=False)
    ensure_table(
        "notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", "period", name="uq_notes_once"),
    )
    ensure_table(
        "periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("period"),
    )
    ensure_table(
        "rollups_hourly",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charge_period", sa.String(length=7), nullable=False),
        sa.Column("adjustment", sa.Boolean(), nullable=False),
        sa.Column("department", sa.String(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("cost_center", sa.String(), nullable=False),
        sa.Column("key_team", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("usage_source", sa.String(), nullable=False),
        sa.Column("priced", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.String(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("tool_calls", sa.BigInteger(), nullable=False),
        sa.Column("cost_pico", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "hour",
            "charge_period",
            "adjustment",
            "department",
            "team",
            "cost_center",
            "key_team",
            "project",
            "user",
            "kind",
            "provider",
            "model",
            "tool",
            "status",
            "usage_source",
            "priced",
            "tags",
            name="uq_rollups_dims",
        ),
    )
    ensure_index("ix_rollups_period", "rollups_hourly", ["charge_period"], unique=False)


def downgrade() -> None:
    op.drop_table("rollups_hourly")
    op.drop_table("periods")
    op.drop_table("notes")
    op.drop_table("keys")
    op.drop_table("events")
