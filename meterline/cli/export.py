"""`meterline export`: the monthly files for finance, through the reports' exporter registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meterline.costing import CostingError

from .common import ConfigOption, MonthOption, fail, ledger, month, settings, write_out

export_app = typer.Typer(no_args_is_help=True, help="Monthly files for finance.")


def _export(kind: str, month_: str, fmt: str, out: Path | None, config: Path | None, **options: str) -> None:
    from meterline.reports import EXPORTS

    formats = EXPORTS[kind]
    if fmt not in formats:
        fail(f"--format: {kind} exports as {', '.join(formats)}, not {fmt!r}")
    s = settings(config)
    try:
        write_out(formats[fmt](ledger(s), s, month(month_), **options), out)
    except CostingError as e:  # e.g. no exchange rate for the month
        fail(str(e))


@export_app.command("events")
def export_events(
    month_: MonthOption,
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="file to write (default: stdout)")] = None,
    config: ConfigOption = None,
) -> None:
    """Every metered call billed in a month, one row each."""
    _export("events", month_, fmt, out, config)


@export_app.command("chargeback")
def export_chargeback(
    month_: MonthOption,
    fmt: Annotated[
        str, typer.Option("--format", help="csv, focus (FinOps FOCUS CSV), focus-parquet (the same as Parquet) or json")
    ] = "csv",
    focus_version: Annotated[str, typer.Option("--focus-version", help="FOCUS version of focus formats: 1.2 or 1.3")] = "1.2",
    out: Annotated[Path | None, typer.Option("--out", help="file to write (default: stdout)")] = None,
    config: ConfigOption = None,
) -> None:
    """The monthly chargeback file."""
    from meterline.reports.exports import FOCUS_FORMATS
    from meterline.reports.focus import VERSIONS

    if focus_version not in VERSIONS:
        fail(f"--focus-version: {', '.join(VERSIONS)}, not {focus_version!r}")
    options = {"focus_version": focus_version} if fmt in FOCUS_FORMATS else {}
    _export("chargeback", month_, fmt, out, config, **options)


@export_app.command("statement")
def export_statement(
    month_: MonthOption,
    department: Annotated[str, typer.Option("--department", help="department id (as in config.yaml)")],
    fmt: Annotated[str, typer.Option("--format", help="pdf or html")] = "pdf",
    out: Annotated[Path | None, typer.Option("--out", help="file to write (default: stdout)")] = None,
    config: ConfigOption = None,
) -> None:
    """One department's monthly statement: a printable, invoice-like document."""
    from meterline.reports.statement import FORMATS, statement, statement_file

    if fmt not in FORMATS:
        fail(f"--format: a statement is {' or '.join(FORMATS)}, not {fmt!r}")
    s = settings(config)
    try:
        st = statement(ledger(s), s, month(month_), department)
        write_out([statement_file(st, fmt)], out)
    except CostingError as e:  # an unknown department, no exchange rate for the month
        fail(str(e))
