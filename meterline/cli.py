"""`meterline`: each command parses options, calls one library function and prints."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from costing import CostingError, Org, create_key, list_keys, revoke_key

from .common import ConfigOption, MonthOption, fail, ledger, month, settings, write_out
from .db_cli import db_app
from .demo.cli import demo
from .finance import period_app, prices_app, report_chargeback, reprice

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Meter, price and charge back LLM and MCP traffic.")
keys_app = typer.Typer(no_args_is_help=True, help="Issue, list and revoke virtual keys.")
export_app = typer.Typer(no_args_is_help=True, help="Monthly files for finance.")
report_app = typer.Typer(no_args_is_help=True, help="Readable reports.")
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(report_app, name="report")
app.add_typer(db_app, name="db")
app.add_typer(period_app, name="period")
app.add_typer(prices_app, name="prices")
app.command("reprice")(reprice)
app.command("demo")(demo)
report_app.command("chargeback")(report_chargeback)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 4000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the proxy."""
    import uvicorn

    from proxy.app import create_app

    s = settings(config)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvicorn re-raises the SIGTERM it drained for once it is done; by then every in-flight call
    # has finished and the ledger is flushed, which is a clean exit, not a death by signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = create_app(s)
    # The modules and the app live as long as the process: keep their ~115k objects out of the
    # collector's full passes, which otherwise walk them all (tens of ms, a stall for every
    # request in flight) every few seconds under load. Here, not in create_app: a test process
    # that builds many apps must still collect them.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=30,
    )


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="team the key's spend is charged to")],
    name: Annotated[str, typer.Option(help="a label")] = "",
    project: Annotated[str, typer.Option(help="default project for its calls")] = "",
    model: Annotated[list[str] | None, typer.Option("--model", help="limit to these models (repeatable, globs ok)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Issue a virtual key; the secret is printed once and never stored."""
    s = settings(config)
    try:
        team_info = Org(s).team(team)
    except CostingError as e:
        fail(str(e))
    row, secret = create_key(ledger(s), team=team, name=name, project=project, models=model or [])
    if as_json:
        typer.echo(json.dumps({"id": row.id, "key": secret, "team": team, "department": team_info.department}))
    else:
        typer.echo(f"{secret}\n(id {row.id}, team {team}, department {team_info.department}; shown once, keep it safe)")


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None) -> None:
    """List keys (never their secrets)."""
    rows = list_keys(ledger(settings(config)))
    items = [
        {
            "id": r.id,
            "prefix": r.prefix,
            "name": r.name,
            "team": r.team,
            "project": r.project,
            "models": [m for m in r.models.split(",") if m],
            "created_at": r.created_at.isoformat(),
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    typer.echo(f"{'ID':<18} {'PREFIX':<12} {'TEAM':<16} {'NAME':<20} STATUS")
    for i in items:
        typer.echo(f"{i['id']:<18} {i['prefix']:<12} {i['team']:<16} {i['name']:<20} {'revoked' if i['revoked'] else 'active'}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id from `keys list`")], config: ConfigOption = None) -> None:
    """Revoke a key; every proxy refuses it within seconds."""
    try:
        revoke_key(ledger(settings(config)), key_id)
    except CostingError as e:
        fail(str(e))
    typer.echo(f"revoked {key_id}")


def _export(kind: str, month_: str, fmt: str, out: Path | None, config: Path | None) -> None:
    from reports import EXPORTS

    formats = EXPORTS[kind]
    if fmt not in formats:
        fail(f"--format: {kind} exports as {', '.join(formats)}, not {fmt!r}")
    s = settings(config)
    try:
        write_out(formats[fmt](ledger(s), s, month(month_)), out)
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
    fmt: Annotated[str, typer.Option("--format", help="csv, focus (FinOps FOCUS) or json")] = "csv",
    out: Annotated[Path | None, typer.Option("--out", help="file to write (default: stdout)")] = None,
    config: ConfigOption = None,
) -> None:
    """The monthly chargeback file."""
    _export("chargeback", month_, fmt, out, config)


@report_app.command("showback")
def report_showback(
    month_: MonthOption, as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """Cost by department and team."""
    from reports import showback
    from reports.tables import showback_table

    s = settings(config)
    sb = showback(ledger(s), Org(s), month(month_))
    typer.echo(json.dumps(sb.as_dict(), indent=2) if as_json else showback_table(sb))


@report_app.command("tools")
def report_tools(
    month_: MonthOption, as_json: Annotated[bool, typer.Option("--json")] = False, config: ConfigOption = None
) -> None:
    """MCP tools: calls, own cost, the cost of their sub-calls (LLM and tool calls), total."""
    from reports.agents import tool_costs, tools_table

    rows = tool_costs(ledger(settings(config)), month(month_))
    typer.echo(json.dumps([r.as_dict() for r in rows], indent=2) if as_json else tools_table(month_, rows))


@report_app.command("runs")
def report_runs(
    month_: MonthOption,
    top: Annotated[int, typer.Option("--top", min=1, help="how many runs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, with each run's call tree")] = False,
    config: ConfigOption = None,
) -> None:
    """Agent runs (traces of several calls) by cost, with depth and fan-out."""
    from reports.agents import runs_table, top_runs

    runs = top_runs(ledger(settings(config)), month(month_), top)
    typer.echo(json.dumps([r.as_dict() for r in runs], indent=2) if as_json else runs_table(month_, runs))


@report_app.command("call")
def report_call(
    call_id: Annotated[str, typer.Argument(help="a call id (X-Meterline-Call-Id, or from an export)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOption = None,
) -> None:
    """One call with everything made on its behalf, and what each part cost."""
    from reports.agents import call_tree, tree_text

    node = call_tree(ledger(settings(config)), call_id)
    if node is None:
        fail(f"no call {call_id!r} in the ledger (recent calls reach it within a flush interval)")
    typer.echo(json.dumps(node.as_dict(), indent=2) if as_json else tree_text(node))


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="port for the dashboard")] = 8501,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    config: ConfigOption = None,
) -> None:
    """Start the Streamlit dashboard."""
    from dashboard import streamlit_command

    settings(config)  # fail here, in one line, rather than inside Streamlit
    cmd = streamlit_command(config, port, host)
    sys.stdout.flush()
    # Become Streamlit, so a signal meant for `meterline dashboard` reaches the server itself.
    os.execv(cmd[0], cmd)


def main() -> None:
    try:
        app()
    except CostingError as e:  # outside the app, where typer.Exit is not handled
        typer.echo(f"meterline: {e}", err=True)
        raise SystemExit(1) from None
