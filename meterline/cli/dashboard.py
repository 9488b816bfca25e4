"""`meterline dashboard`: become the Streamlit server."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from .common import ConfigOption, settings


def dashboard(
    port: Annotated[int, typer.Option(help="port for the dashboard")] = 8501,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    config: ConfigOption = None,
    now: Annotated[str | None, typer.Option(help="show the ledger as at this time (ISO 8601, UTC)", hidden=True)] = None,
) -> None:
    """Start the Streamlit dashboard."""
    from meterline.dashboard import streamlit_command

    settings(config)  # fail here, in one line, rather than inside Streamlit
    cmd = streamlit_command(config, port, host)
    if now:  # the clock seam of the demo and the screenshot tests
        cmd += ["--now", now]
    sys.stdout.flush()
    # Become Streamlit, so a signal meant for `meterline dashboard` reaches the server itself.
    os.execv(cmd[0], cmd)
