"""Chargeback: what each department is billed for a month, as rows for files and people.

The numbers come from `costing.load_chargeback` (the math lives in the core so the proxy's
admin API can serve the same data without importing reports); a closed month comes from its
snapshot verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from costing import Chargeback, ChargebackLine, Settings, load_chargeback, usd

PLACES = 6  # line items keep six decimals

CONTRACT_COLUMNS = (
    "period department cost_center team project kind provider model tool requests input_tokens "
    "cached_input_tokens output_tokens reasoning_tokens tool_calls cost_usd allocated_usd markup_usd charge_usd"
).split()
CSV_COLUMNS = [*CONTRACT_COLUMNS, "adjustment", "currency", "tags"]
"""The contract's columns, then: adjustment (usage of a closed month billed in this one), the
currency the money columns hold, and the calls' tags."""


def chargeback(engine: sa.Engine, settings: Settings, period: str) -> Chargeback:
    return load_chargeback(engine, settings, period)


def line_record(cb: Chargeback, ln: ChargebackLine) -> dict[str, Any]:
    """One line as the CSV shows it (money as six-decimal strings)."""
    rec: dict[str, Any] = {c: getattr(ln, c) for c in CONTRACT_COLUMNS[:15]}
    for c in ("cost_usd", "allocated_usd", "markup_usd", "charge_usd"):
        rec[c] = usd(getattr(ln, c), PLACES)
    rec["adjustment"] = ln.adjustment
    rec["currency"] = cb.currency
    rec["tags"] = ln.tags
    return rec


def csv_rows(cb: Chargeback) -> Iterator[list[Any]]:
    for ln in cb.lines:
        rec = line_record(cb, ln)
        yield [rec[c] for c in CSV_COLUMNS]


__all__ = ["CSV_COLUMNS", "ChargebackLine", "PLACES", "chargeback", "csv_rows", "line_record"]
