"""The `meterline demo` command."""

from __future__ import annotations

import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DIR = Path("meterline-demo")


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def demo(
    folder: Annotated[Path, typer.Option("--dir", help="where the demo's config and ledger go (replaced on each run)")] = DEFAULT_DIR,
    calls: Annotated[int, typer.Option("--calls", min=50, help="calls to plan over last month and this one")] = 3000,
    port: Annotated[int, typer.Option(help="port for the dashboard")] = 8501,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="stop after filling the ledger")] = False,
    seed: Annotated[int, typer.Option(help="random seed of the generated month")] = 7,
    now: Annotated[
        str | None, typer.Option(help="pretend it is this time (ISO 8601, UTC), e.g. 2026-12-01T09:00: the demo's clock", hidden=True)
    ] = None,
) -> None:
    """A self-contained demo: a simulated provider, the proxy, a month of generated traffic, then the dashboard."""
    from meterline.cli.common import fail
    from meterline.dashboard import streamlit_command

    from .run import NotADemoFolder, port_free, run_demo

    try:
        at = _when(now)
    except ValueError:
        fail(f"--now {now!r} is not an ISO 8601 time such as 2026-12-01T09:00")
    if not no_dashboard and not port_free(port):
        fail(f"port {port} is taken (another dashboard?); pick a free one with --port")
    typer.echo(f"Meterline demo in {folder}/ (no provider key needed: the provider and tool server are simulated)")
    try:
        result = run_demo(folder, calls=calls, seed=seed, now=at, progress=typer.echo)
    except NotADemoFolder as e:
        fail(str(e))
    s = result.stats
    typer.echo(
        f"Sent {s.sent:,} planned calls ({s.agent_runs:,} agent runs with tool calls and sub-calls) in {result.seconds:.0f} s: "
        f"the ledger holds {result.ledger_rows:,} calls, {result.ledger_rejected:,} of them refused by a budget. "
        f"Ledger: {folder / 'ledger.db'}"
    )
    typer.echo(f"Try: meterline report showback --month {result.period} --config {result.config_path}")
    if no_dashboard:
        return
    if not port_free(port):  # taken while the demo ran
        fail(f"port {port} is taken (another dashboard?); the ledger is ready: meterline dashboard --port N --config {result.config_path}")
    password = secrets.token_urlsafe(9)
    typer.echo(
        f"\nDashboard: http://127.0.0.1:{port}\n  user: admin\n  password: {password}\n"
        f"(later: METERLINE_DASHBOARD_PASSWORD=... meterline dashboard --config {result.config_path})\nCtrl-C stops it."
    )
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": password}
    cmd = streamlit_command(result.config_path, port)
    if at is not None:
        cmd += ["--now", at.isoformat()]  # the dashboard sees the demo's month as the demo left it
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # the demo is done: become the dashboard (Ctrl-C stops it)
