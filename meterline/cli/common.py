"""What every command shares: the --config option, loading settings, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import sqlalchemy as sa
import typer

from meterline.costing import (
    ConfigError,
    CostingError,
    InvalidMonth,
    Settings,
    adopt_orphans,
    create_engine,
    create_schema,
    load_settings,
    parse_month,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="config file (default: ./config.yaml or $METERLINE_CONFIG)", show_default=False),
]
MonthOption = Annotated[str, typer.Option("--month", help="billing month, YYYY-MM")]

def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"meterline: {message}", err=True)
    raise typer.Exit(code)


def settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as e:
        fail(str(e))


def open_ledger(s: Settings) -> sa.Engine:
    """The ledger with its schema up to date, or one line and exit 1 if it cannot be opened."""
    engine = create_engine(s.database)
    try:
        create_schema(engine)
    except sa.exc.OperationalError as e:
        fail(f"cannot open the ledger database: {str(e.orig).splitlines()[0]}")
    return engine


def ledger(s: Settings) -> sa.Engine:
    """The ledger, with whatever this host's dead serving processes left spooled written in
    first: a call acknowledged before a SIGKILL is in every report at once, no restart needed.
    """
    engine = open_ledger(s)
    try:
        adopt_orphans(engine, s.server.spool_dir)
    except (sa.exc.SQLAlchemyError, OSError) as e:  # report what the ledger holds; say what it lacks
        warn(f"events spooled under {s.server.spool_dir} could not be written in: {str(e).splitlines()[0]}")
    if s.server.spool_url:
        _drain_stream(engine, s)
    return engine


def _drain_stream(engine: sa.Engine, s: Settings) -> None:
    """With the spool in NATS JetStream: every event the stream holds is written in first (by
    this command or a live replica), so the report includes every call acknowledged so far."""
    import asyncio

    from meterline.costing.jetstream import drain

    assert s.server.spool_url is not None
    try:
        asyncio.run(drain(engine, s.server.spool_url, s.server.jetstream))
    except ConfigError as e:
        warn(f"{e}; events still in the stream are not in this report")
    except (TimeoutError, sa.exc.SQLAlchemyError, OSError) as e:
        warn(f"events in the NATS stream could not all be written in: {(str(e) or type(e).__name__).splitlines()[0]}")


def warn(message: str) -> None:
    typer.echo(f"meterline: warning: {message}", err=True)


def month(value: str) -> str:
    try:
        return parse_month(value)
    except InvalidMonth as e:
        fail(f"--month: {e}")


def write_out(chunks: object, out: Path | None) -> None:
    """Write text (str) or binary (bytes) chunks to `out`, atomically, or to stdout."""
    if out is None:
        for chunk in chunks:  # type: ignore[attr-defined]
            if isinstance(chunk, bytes):
                sys.stdout.flush()
                sys.stdout.buffer.write(chunk)
            else:
                sys.stdout.write(chunk)
        sys.stdout.flush()
        return
    tmp = out.with_name(out.name + ".part")
    try:
        with tmp.open("wb") as f:
            for chunk in chunks:  # type: ignore[attr-defined]
                f.write(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8"))
        tmp.replace(out)
    except OSError as e:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        fail(f"--out: cannot write {out}: {e.strerror or e}")


__all__ = ["ConfigOption", "CostingError", "MonthOption", "fail", "ledger", "month", "settings", "warn", "write_out"]
