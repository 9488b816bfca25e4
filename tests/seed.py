"""Seeding a ledger directly, for report and dashboard tests that need no traffic."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.costing import PICO, period_of, write_events

DEFAULTS: dict[str, Any] = {
    "kind": "llm",
    "status": "ok",
    "department": "research",
    "team": "nlp",
    "cost_center": "CC-100",
    "key_team": "",
    "project": "",
    "user": "",
    "key_id": "key_seed",
    "provider": "sim",
    "model": "gpt-4o-mini",
    "tool": "",
    "method": "/chat/completions",
    "input_tokens": 100,
    "cached_input_tokens": 0,
    "output_tokens": 50,
    "reasoning_tokens": 0,
    "cache_write_tokens": 0,
    "priced": True,
    "price_version": "seed",
    "usage_source": "reported",
    "trace_id": "",
    "parent_span_id": "",
    "parent_call_id": "",
    "tags": "",
    "http_status": 200,
    "latency_ms": 10,
    "request_bytes": 100,
    "response_bytes": 200,
    "error": "",
    "adjustment": False,
}


def event(cost_usd: str | Decimal, ts: datetime | None = None, **fields: Any) -> dict[str, Any]:
    ts = ts or datetime.now(UTC)
    row = {**DEFAULTS, **fields, "call_id": fields.get("call_id") or secrets.token_hex(8), "ts": ts}
    row["key_team"] = row["key_team"] or row["team"]
    # As the proxy records it: a linked parent is the call whose span is the parent span.
    row["parent_span_id"] = row["parent_span_id"] or row["parent_call_id"]
    row["cost_pico"] = int(Decimal(cost_usd) / PICO)
    row.setdefault("charge_period", period_of(ts))
    return row


def seed(engine: Any, rows: list[dict[str, Any]]) -> int:
    return write_events(engine, rows)
