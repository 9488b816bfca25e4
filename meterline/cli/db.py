"""`meterline db`: the ledger database: its schema, retention and recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer

from meterline.costing import create_engine, recover_spool
from meterline.costing.migrate import current, head, upgrade
from meterline.costing.retention import prune_events

from .common import ConfigOption, fail, ledger, settings

db_app = typer.Typer(no_args_is_help=True, help="The ledger database: schema, retention, recovery.")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="revision to migrate to")] = "head",
    config: ConfigOption = None,
) -> None:
    """Create the ledger, or migrate an existing one in place (SQLite or PostgreSQL)."""
    engine = create_engine(settings(config).database)
    try:
        before = current(engine)
        after = upgrade(engine, revision)
    except sa.exc.OperationalError as e:
        fail(f"cannot open the ledger database: {str(e.orig).splitlines()[0]}")
    except Exception as e:  # noqa: BLE001 - alembic's errors share no base; one line, no traceback
        fail(f"upgrade to {revision!r} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"ledger already at revision {after}")
    else:
        typer.echo(f"ledger upgraded from {before or 'no revision'} to {after}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the ledger's schema revision and the newest this version knows."""
    engine = create_engine(settings(config).database)
    try:
        rev = current(engine)
    except sa.exc.OperationalError as e:
        fail(f"cannot open the ledger database: {str(e.orig).splitlines()[0]}")
    finally:
        engine.dispose()
    typer.echo(f"{rev or 'none'} (head {head()})")


@db_app.command("prune")
def db_prune(
    older_than_days: Annotated[int, typer.Option("--older-than-days", min=0, help="keep raw events of the last N days")],
    config: ConfigOption = None,
) -> None:
    """Delete raw events of closed months that ended more than N days ago; rollups stay, so
    showback and chargeback do not change (the events export of those months becomes empty)."""
    engine = create_engine(settings(config).database)
    try:
        pruned = prune_events(engine, older_than_days)
    except sa.exc.OperationalError as e:
        fail(f"cannot open the ledger database: {str(e.orig).splitlines()[0]}")
    finally:
        engine.dispose()
    if not pruned.months:
        typer.echo(f"nothing to prune: no closed month ended before {pruned.cutoff:%Y-%m-%d}")
    for period, n in pruned.months.items():
        typer.echo(f"{period}: {n} raw events deleted")


@db_app.command("recover")
def db_recover(
    spool: Annotated[Path, typer.Option("--spool", help="a spool folder, or a spool root of several, e.g. copied from a dead host")],
    config: ConfigOption = None,
) -> None:
    """Write the events of a spool folder into the ledger, once each (safe to run again)."""
    if not spool.is_dir():
        fail(f"--spool: {spool} is not a folder")
    engine = ledger(settings(config))
    try:
        r = recover_spool(engine, spool)
    except sa.exc.SQLAlchemyError as e:
        fail(f"cannot write to the ledger database: {str(e).splitlines()[0]}")
    except OSError as e:
        fail(f"--spool: cannot read {spool}: {e.strerror or e}")
    finally:
        engine.dispose()
    for folder in r.busy:
        typer.echo(f"meterline: warning: {folder} is in use by a running meterline process; left to it", err=True)
    typer.echo(f"{r.events} events read from {spool}: {r.new} written, {r.events - r.new} already in the ledger")
