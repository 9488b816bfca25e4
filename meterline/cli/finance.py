"""Commands finance runs: close a month, see which price applies when, dry-run a reprice,
read the chargeback. Joined to the main app in cli.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from meterline.costing import CostingError, PeriodNotEnded, PriceBook, close_period, usd
from meterline.costing.months import ensure_ended

from .common import ConfigOption, MonthOption, fail, ledger, month, settings

period_app = typer.Typer(no_args_is_help=True, help="Close billing months.")
prices_app = typer.Typer(no_args_is_help=True, help="Price versions.")


@period_app.command("close")
def period_close(
    period: Annotated[str, typer.Argument(help="the month to close, YYYY-MM")],
    force: Annotated[bool, typer.Option("--force", help="close a month that has not ended yet")] = False,
    config: ConfigOption = None,
) -> None:
    """Freeze a month's chargeback; later events for it become adjustments in the next open month."""
    period = month(period)
    if not force:
        try:
            ensure_ended(period)  # before the config and the ledger are opened
        except PeriodNotEnded as e:
            fail(f"{e}; wait for it to end or pass --force")
    s = settings(config)
    try:
        cb = close_period(ledger(s), s, period, force=True)  # checked above, unless forced
    except CostingError as e:
        fail(str(e))
    typer.echo(f"closed {period}: {len(cb.lines)} lines, {usd(cb.total, 2)} {cb.currency} billed; its chargeback is now final")


@prices_app.command("show")
def prices_show(
    model: Annotated[str, typer.Argument(help="a configured model name")],
    on: Annotated[str | None, typer.Option("--on", help="which version applies on this day (YYYY-MM-DD; default today)")] = None,
    config: ConfigOption = None,
) -> None:
    """Every price version of a model, from when until when, and which one applies."""
    from meterline.reports.prices import price_versions, prices_table

    try:
        day = date.fromisoformat(on) if on else None
    except ValueError:
        fail(f"--on: expected YYYY-MM-DD, got {on!r}")
    s = settings(config)
    try:
        versions = price_versions(PriceBook(s.prices), model, day)
    except CostingError as e:
        fail(str(e))
    typer.echo(prices_table(model, versions, day))


def reprice(
    month_: MonthOption,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    rate_cards: Annotated[
        Path | None, typer.Option("--rate-cards", help="a YAML file with `rate_cards:`: each department's charge with them instead (any month)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Dry run: what the current prices would change in an open month (nothing is written)."""
    from meterline.reports.reprice import reprice as run
    from meterline.reports.tables import reprice_table

    s = settings(config)
    if rate_cards is not None:
        _reprice_cards(s, month(month_), rate_cards, as_json)
        return
    try:
        result = run(ledger(s), s, month(month_))
    except CostingError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        typer.echo(reprice_table(result))


def _reprice_cards(s: Any, period: str, path: Path, as_json: bool) -> None:
    from meterline.reports.reprice_cards import reprice_cards, with_cards

    try:
        result = reprice_cards(ledger(s), s, period, with_cards(s, path))
    except CostingError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    typer.echo(f"{'DEPARTMENT':<24}{'COST USD':>16}{'CHARGE USD':>16}{'NEW CHARGE USD':>18}{'CHANGE':>16}")
    for r in result.rows:
        typer.echo(f"{r.department or '(unallocated)':<24}{r.cost_usd:>16.2f}{r.charge_usd:>16.2f}{r.new_charge_usd:>18.2f}{r.diff_usd:>+16.2f}")


def report_chargeback(
    month_: MonthOption,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """What each department is billed: usage, shared costs, markup, month over month."""
    from meterline.reports import chargeback_report
    from meterline.reports.tables import chargeback_table

    s = settings(config)
    try:
        report = chargeback_report(ledger(s), s, month(month_))
    except CostingError as e:
        fail(str(e))
    typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else chargeback_table(report))


__all__ = ["period_app", "prices_app", "report_chargeback", "reprice"]
