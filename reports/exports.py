"""Export formats, in a registry: `meterline export KIND --format NAME` looks them up here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from meterline.costing import (
    BILLING_COLUMNS,
    EVENT_COLUMNS,
    Settings,
    exact,
    from_pico,
    load_chargeback,
)

from .chargeback import CSV_COLUMNS, csv_rows
from .csvsafe import csv_line, safe_text
from .focus import COLUMNS, focus_rows
from .focus_dimensions import line_parts
from .focus_parquet import focus_parquet
from .ledger_queries import events

EXTRA_EVENT_COLUMNS = [
    "key_team",
    "cost_center",
    "charge_period",
    "adjustment",
    "method",
    "cache_write_tokens",
    "priced",
    "price_version",
    "http_status",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "tags",
    "error",
    *BILLING_COLUMNS,
]
EVENTS_CSV_COLUMNS = EVENT_COLUMNS + EXTRA_EVENT_COLUMNS


def _event_record(row: dict[str, Any]) -> dict[str, Any]:
    rec = {c: row.get(c) for c in EVENTS_CSV_COLUMNS}
    rec["ts"] = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rec["cost_usd"] = exact(from_pico(row["cost_pico"]))
    return rec


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, Decimal):
        return f"{value:f}"  # a number, never quoted: a negative amount must stay numeric
    return "" if value is None else str(value)


def _csv(header: list[str], rows: Iterator[list[Any]]) -> Iterator[str]:
    """A CSV file in chunks of about 64 KiB: safe cells, embedded line breaks quoted."""
    chunk = [csv_line(header)]
    size = 0
    for row in rows:
        line = csv_line([_cell(v) for v in row])
        chunk.append(line)
        size += len(line)
        if size > 1 << 16:
            yield "".join(chunk)
            chunk, size = [], 0
    yield "".join(chunk)


def events_csv(engine: sa.Engine, settings: Settings, period: str) -> Iterator[str]:
    recs = (_event_record(r) for r in events(engine, period))
    return _csv(EVENTS_CSV_COLUMNS, ([rec[c] for c in EVENTS_CSV_COLUMNS] for rec in recs))


def events_jsonl(engine: sa.Engine, settings: Settings, period: str) -> Iterator[str]:
    for r in events(engine, period):
        yield orjson.dumps(_event_record(r)).decode() + "\n"


def chargeback_csv(engine: sa.Engine, settings: Settings, period: str) -> Iterator[str]:
    return _csv(CSV_COLUMNS, csv_rows(load_chargeback(engine, settings, period)))


def chargeback_focus(engine: sa.Engine, settings: Settings, period: str, *, focus_version: str = "1.2") -> Iterator[str]:
    """FinOps FOCUS CSV, version 1.2 or 1.3 (see reports/focus.py for how Meterline maps)."""
    cb = load_chargeback(engine, settings, period)
    parts = line_parts(engine, period)  # a row per SKU for lines billed along more than text
    rows = focus_rows(cb, version=focus_version, allocation=settings.chargeback.allocation, parts=parts)
    return _csv(COLUMNS[focus_version], rows)


def chargeback_focus_parquet(
    engine: sa.Engine, settings: Settings, period: str, *, focus_version: str = "1.2"
) -> Iterator[bytes]:
    """The FOCUS rows as one Parquet file (bytes, not text)."""
    cb = load_chargeback(engine, settings, period)
    parts = line_parts(engine, period)
    yield focus_parquet(cb, version=focus_version, allocation=settings.chargeback.allocation, parts=parts)


def chargeback_json(engine: sa.Engine, settings: Settings, period: str) -> Iterator[str]:
    yield orjson.dumps(load_chargeback(engine, settings, period).as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


Exporter = Callable[..., Iterator[str] | Iterator[bytes]]
"""(engine, settings, period, **options) -> chunks; FOCUS formats take `focus_version`."""
FOCUS_FORMATS = ("focus", "focus-parquet")

EXPORTS: dict[str, dict[str, Exporter]] = {
    "events": {"csv": events_csv, "jsonl": events_jsonl},
    "chargeback": {
        "csv": chargeback_csv,
        "focus": chargeback_focus,
        "focus-parquet": chargeback_focus_parquet,
        "json": chargeback_json,
    },
}
