"""The `meterline` command. Each command group has its own module; a command parses options,
calls one library function and prints, and a known error is one line on stderr."""

from __future__ import annotations

import typer

from meterline.costing import CostingError
from meterline.demo.cli import demo

from .dashboard import dashboard
from .db import db_app
from .export import export_app
from .finance import period_app, prices_app, reprice
from .keys import keys_app
from .report import report_app
from .serve import serve

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Meter, price and charge back LLM and MCP traffic.")
app.command()(serve)
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(report_app, name="report")
app.add_typer(db_app, name="db")
app.add_typer(period_app, name="period")
app.add_typer(prices_app, name="prices")
app.command("reprice")(reprice)
app.command()(dashboard)
app.command("demo")(demo)


def main() -> None:
    try:
        app()
    except CostingError as e:  # outside the app, where typer.Exit is not handled
        typer.echo(f"meterline: {e}", err=True)
        raise SystemExit(1) from None


__all__ = ["app", "main"]
