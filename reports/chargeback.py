"""Chargeback: what each department is billed for a month, as rows for files and people.

The numbers come from `costing.load_chargeback` (the math lives in the core so the proxy's
admin API can serve the same data without importing reports); a closed month comes from its
snapshot verbatim.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from meterline.costing import (
    Chargeback,
    ChargebackLine,
    ConfigError,
    Settings,
    load_chargeback,
    previous_period,
)

from .trend import change_percent, forecast

Q6 = Decimal("0.000001")  # line items keep six decimals, as the core rounds them

CONTRACT_COLUMNS = (
    "period department cost_center team project kind provider model tool requests input_tokens "
    "cached_input_tokens output_tokens reasoning_tokens tool_calls cost_usd allocated_usd markup_usd charge_usd"
).split()
CREDIT_COLUMNS = ["credit_usd", "billed_usd"]
CSV_COLUMNS = [*CONTRACT_COLUMNS, *CREDIT_COLUMNS, "rated_usd", "adjustment", "currency", "tags"]
"""The contract's columns, then: the credits the line's calls drew and what is billed beyond
them (`charge_usd - credit_usd`), the usage at the department's rate card (`rated_usd`, the
cost when no rate card prices it), adjustment (usage of a closed month billed in this one), the
currency the money columns hold, and the calls' tags."""


@dataclass
class ChargebackReport:
    """A month's chargeback for people: with the month before and a month-end forecast."""

    chargeback: Chargeback
    previous_billed: dict[str, Decimal]  # department -> billed the month before
    previous_total: Decimal
    forecast: Decimal | None  # open month: usage at the run rate so far plus the fixed shared costs
    previous_names: dict[str, str] = field(default_factory=dict)  # department -> name, the month before

    def as_dict(self) -> dict[str, Any]:
        return self.chargeback.as_dict() | {
            "previous_total": str(self.previous_total),
            "change_percent": _str(change_percent(self.chargeback.total, self.previous_total)),
            "forecast": _str(self.forecast),
        }


def _str(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def chargeback_report(
    engine: sa.Engine, settings: Settings, period: str, *, now: datetime | None = None
) -> ChargebackReport:
    cb = load_chargeback(engine, settings, period)
    try:
        before = load_chargeback(engine, settings, previous_period(period))
    except ConfigError:  # no exchange rate for a month nobody asked about
        before = None
    # A month without any usage (before Meterline ran) is no comparison, fixed costs or not.
    active = before is not None and (before.closed_at or any(ln.kind not in ("shared", "commitment") for ln in before.lines))
    previous = {d.department: d.billed for d in before.departments} if before is not None and active else {}
    fixed = cb.shared_costs
    usage_part = forecast(cb.total - fixed, period, now) if cb.closed_at is None else None
    return ChargebackReport(
        chargeback=cb,
        previous_billed=previous,
        previous_total=sum(previous.values(), Decimal("0.00")),
        forecast=None if usage_part is None else usage_part + fixed.quantize(Decimal("0.01")),
        previous_names={d.department: d.name for d in before.departments} if active and before else {},
    )


def line_record(cb: Chargeback, ln: ChargebackLine) -> dict[str, Any]:
    """One line as the CSV shows it (money as six-decimal strings)."""
    rec: dict[str, Any] = {c: getattr(ln, c) for c in CONTRACT_COLUMNS[:15]}
    for c in ("cost_usd", "allocated_usd", "markup_usd", "charge_usd", "credit_usd", "billed_usd"):
        rec[c] = getattr(ln, c).quantize(Q6)
    rec["rated_usd"] = (ln.cost_usd if ln.rated_usd is None else ln.rated_usd).quantize(Q6)
    rec["adjustment"] = ln.adjustment
    rec["currency"] = cb.currency
    rec["tags"] = ln.tags
    return rec


def csv_rows(cb: Chargeback) -> Iterator[list[Any]]:
    for ln in cb.lines:
        rec = line_record(cb, ln)
        yield [rec[c] for c in CSV_COLUMNS]


__all__ = [
    "CSV_COLUMNS",
    "ChargebackLine",
    "ChargebackReport",
    "chargeback_report",
    "csv_rows",
    "line_record",
]
