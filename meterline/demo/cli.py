"""The `meterline demo` command."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DIR = Path("meterline-demo")


def demo(
    folder: Annotated[Path, typer.Option("--dir", help="where the demo's config and ledger go (replaced on each run)")] = DEFAULT_DIR,
    calls: Annotated[int, typer.Option("--calls", min=50, help="calls to plan over last month and this one")] = 3000,
    port: Annotated[int, typer.Option(help="port for the dashboard")] = 8501,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="stop after filling the ledger")] = False,
    seed: Annotated[int, typer.Option(help="random seed of the generated month")] = 7,
) -> None:
    """A self-contained demo: a simulated provider, the proxy, a month of generated traffic, then the dashboard."""
    from meterline.cli.common import fail
    from meterline.dashboard import streamlit_command

    from .run import NotADemoFolder, run_demo

    typer.echo(f"Meterline demo in {folder}/ (no provider key needed: the provider and tool server are simulated)")
    try:
        result = run_demo(folder, calls=calls, seed=seed, progress=typer.echo)
    except NotADemoFolder as e:
        fail(str(e))
    s = result.stats
    typer.echo(
        f"Sent {s.sent:,} calls ({s.agent_runs:,} agent runs with tool calls and sub-calls) in {result.seconds:.0f} s; "
        f"{s.rejected:,} refused by a budget. Ledger: {folder / 'ledger.db'}"
    )
    typer.echo(f"Try: meterline report showback --month {result.period} --config {result.config_path}")
    if no_dashboard:
        return
    password = secrets.token_urlsafe(9)
    typer.echo(
        f"\nDashboard: http://127.0.0.1:{port}\n  user: admin\n  password: {password}\n"
        f"(later: METERLINE_DASHBOARD_PASSWORD=... meterline dashboard --config {result.config_path})\nCtrl-C stops it."
    )
    env = {**os.environ, "METERLINE_DASHBOARD_PASSWORD": password}
    cmd = streamlit_command(result.config_path, port)
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # the demo is done: become the dashboard (Ctrl-C stops it)
