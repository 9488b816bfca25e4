"""A month's chargeback as the dashboard's Chargeback page shows it: per department and as
files. (Closing a month is the core's: `meterline.costing.close_period`.)

Downloads for everyone are the very bytes `meterline export chargeback` writes. A viewer
limited to one department gets the same file restricted to that department's lines (same
columns, same formatting): the rows of the full file with that department.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from meterline.costing import Chargeback, ChargebackLine, DepartmentCharge

from .chargeback import CSV_COLUMNS, ChargebackReport, csv_rows
from .exports import _csv
from .focus import FOCUS_COLUMNS, Parts, focus_rows
from .trend import FORECAST_MIN_DAYS, change_percent, forecast

FILES = {"csv": ("text/csv", "chargeback-{period}.csv"), "focus": ("text/csv", "chargeback-{period}-focus.csv")}


@dataclass
class InvoiceRow:
    """One department's bill for the month, with the month before and a forecast."""

    charge: DepartmentCharge
    previous_billed: Decimal | None  # None: no usage the month before
    forecast: Decimal | None  # month-end at the run rate; open current month only

    @property
    def change_percent(self) -> Decimal | None:
        return change_percent(self.charge.billed, self.previous_billed)


def restrict(cb: Chargeback, department: str | None) -> Chargeback:
    """The chargeback as one department may see it: its lines and its total only."""
    if department is None:
        return cb
    depts = [d for d in cb.departments if d.department == department]
    return replace(
        cb,
        lines=[ln for ln in cb.lines if ln.department == department],
        departments=depts,
        total=sum((d.billed for d in depts), Decimal("0.00")),
    )


@dataclass
class Invoice:
    """The month's bill as one viewer sees it (every department, or one)."""

    chargeback: Chargeback  # restricted to the department when one is given
    rows: list[InvoiceRow]
    billed: Decimal  # cents
    previous_billed: Decimal | None
    forecast: Decimal | None

    @property
    def change_percent(self) -> Decimal | None:
        return change_percent(self.billed, self.previous_billed)


def invoice(report: ChargebackReport, department: str | None = None, *, now: datetime | None = None) -> Invoice:
    cb = restrict(report.chargeback, department)
    rows = invoice_rows(report, department, now=now)
    if department is None:
        previous = report.previous_total if report.previous_billed else None
        ahead = report.forecast if forecast(Decimal(1), cb.period, now, min_days=FORECAST_MIN_DAYS) else None
    else:
        previous = rows[0].previous_billed if rows else None
        ahead = rows[0].forecast if rows else None
    return Invoice(cb, rows, cb.total, previous, ahead)


def invoice_rows(report: ChargebackReport, department: str | None = None, *, now: datetime | None = None) -> list[InvoiceRow]:
    cb = restrict(report.chargeback, department)
    open_month = cb.closed_at is None
    return [
        InvoiceRow(
            charge=d,
            previous_billed=report.previous_billed.get(d.department),
            forecast=forecast(d.billed, cb.period, now, min_days=FORECAST_MIN_DAYS) if open_month else None,
        )
        for d in cb.departments
    ]


def lines_of(cb: Chargeback, department: str) -> list[ChargebackLine]:
    return [ln for ln in cb.lines if ln.department == department]


def chargeback_file(cb: Chargeback, fmt: str, department: str | None = None, parts: Parts | None = None) -> bytes:
    """The chargeback file in `fmt` (csv | focus): the bytes `meterline export chargeback`
    writes for this chargeback (the exporters render it the same way), restricted to one
    department's rows when `department` is given. `parts`: the month's costs by billed
    dimension (focus_dimensions.line_parts), which split FOCUS rows per SKU as the export does."""
    cb = restrict(cb, department)
    header, rows = (CSV_COLUMNS, csv_rows(cb)) if fmt == "csv" else (FOCUS_COLUMNS, focus_rows(cb, parts=parts))
    return "".join(_csv(header, rows)).encode("utf-8")


__all__ = ["FILES", "Invoice", "InvoiceRow", "invoice", "chargeback_file", "invoice_rows", "lines_of", "restrict"]
