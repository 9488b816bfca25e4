"""The Streamlit dashboard: lays out what `reports` computes, nothing more."""

from __future__ import annotations

import sys
from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")


def streamlit_command(config: Path | None, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves the dashboard (what `meterline dashboard` runs)."""
    cfg = ["--config", str(config.resolve())] if config else []
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.port", str(port), "--server.address", host,
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        "--", *cfg,
    ]  # fmt: skip
