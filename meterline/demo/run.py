"""Run the demo: simulators, the proxy on a fresh ledger, a month of traffic through it.

Everything listens on 127.0.0.1 and nothing leaves the machine: the "provider" is
`meterline.testing.upstream.SimServer` and the tool server `meterline.testing.mcp_server`. The
proxy runs in this process so the demo can move its clock (`Meter.clock`) through the month.
"""

from __future__ import annotations

import asyncio
import calendar
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import uvicorn
import yaml

from meterline.costing import (
    PriceBook,
    Usage,
    cost_of,
    create_engine,
    create_key,
    create_schema,
    period_of,
    settings_from_dict,
)
from meterline.testing.mcp_server import MCPSimServer
from meterline.testing.upstream import SimServer

from .org import ADMIN_KEY_ENV, DEPARTMENTS, MCP_AUTH_ENV, PRICES, SIM_KEY_ENV, TEAMS, DemoConfig
from .traffic import Clock, Driver, Planned, Stats, plan

CREATED = ("ledger.db", "ledger.db-wal", "ledger.db-shm", "config.yaml")  # what a rerun replaces
MARKER = ".meterline-demo"  # marks a folder the demo made, so a rerun may replace its files


class NotADemoFolder(Exception):
    """The folder has files the demo did not make: it will not replace them."""


@dataclass
class DemoResult:
    folder: Path
    config_path: Path
    period: str  # the current month
    planned: int
    stats: Stats
    seconds: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _estimate(p: Planned, book: PriceBook) -> Decimal:
    """Roughly what a planned call will cost (to set budgets that the month will hit)."""
    price = book.lookup(p.model, at=p.ts)
    if price is None:
        return Decimal(0)
    calls = 3 if p.kind == "agent" else 1
    return calls * cost_of(Usage(input_tokens=p.words + 20, cached_input_tokens=p.cached, output_tokens=p.output), price)


def _budgets(planned: list[Planned], now: datetime) -> dict[str, str]:
    """Budgets for this month: support's helpdesk passes its budget part-way through, product
    gets near its own, research has room."""
    book = PriceBook(settings_from_dict({"prices": PRICES}).prices)
    month = period_of(now)
    spent: dict[str, Decimal] = {}
    for p in planned:
        if period_of(p.ts) == month:
            for who in (p.team.id, p.team.department):
                spent[who] = spent.get(who, Decimal(0)) + _estimate(p, book)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(now.year, now.month)[1]
    run_rate = Decimal(days * 86400) / Decimal(max((now - start).total_seconds(), 3600))
    q = Decimal("0.01")
    return {
        "helpdesk": str((spent.get("helpdesk", Decimal(1)) * Decimal("0.7")).quantize(q) or 1),
        "product": str((spent.get("product", Decimal(1)) * run_rate * Decimal("0.97")).quantize(q) or 1),
        "research": str((spent.get("research", Decimal(1)) * run_rate * 3).quantize(q) or 1),
    }


class _Proxy:
    """The proxy app under uvicorn in a thread of this process."""

    def __init__(self, settings: object, port: int):
        from meterline.proxy.app import create_app

        self.app = create_app(settings)  # type: ignore[arg-type]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="meterline-demo-proxy", daemon=True)

    def start(self) -> _Proxy:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_demo(
    folder: Path,
    *,
    calls: int = 3000,
    seed: int = 7,
    now: datetime | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """Fill `folder` with a config and a ledger holding last month and this month so far.

    `calls` counts planned calls (an agent run is one, and makes several). Deterministic for a
    `seed`, apart from ids and the time it takes."""
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise NotADemoFolder(f"{folder} has files the demo did not make; pick an empty or new folder with --dir")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by `meterline demo`; a rerun replaces the config, ledger and spool here\n")
    for name in CREATED:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "spool", ignore_errors=True)
    rng = random.Random(seed)
    start = (now.replace(day=1) - timedelta(days=1)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    planned = plan(start, now, calls, rng)

    sim_key, mcp_token, admin_key = (secrets.token_urlsafe(16) for _ in range(3))
    environ = {SIM_KEY_ENV: sim_key, MCP_AUTH_ENV: f"Bearer {mcp_token}", ADMIN_KEY_ENV: admin_key}
    sim = SimServer(api_key=sim_key, record=False).start()
    proxy_port, mcp_port = _free_port(), _free_port()
    cfg = DemoConfig(folder, sim.url, f"http://127.0.0.1:{mcp_port}/mcp", _budgets(planned, now))
    raw = cfg.as_dict()
    config_path = folder / "config.yaml"
    config_path.write_text(
        "# Written by `meterline demo` (a simulated provider and tool server; rerun to regenerate).\n"
        + yaml.safe_dump(raw, sort_keys=False)
    )
    settings = settings_from_dict(raw, path=str(config_path), environ=environ)
    engine = create_engine(settings.database)
    create_schema(engine)
    keys = {t.id: create_key(engine, team=t.id, name=f"{t.id}-app", project=t.projects[0])[1] for t in TEAMS}
    tool_key = create_key(engine, team="agents-infra", name="tool-server")[1]
    engine.dispose()

    proxy = _Proxy(settings, proxy_port).start()
    mcp = None
    try:
        clock = Clock(start)
        proxy.app.state.runtime.meter.clock = clock
        proxy.app.state.runtime.keys.refresh()
        mcp = MCPSimServer(port=mcp_port, llm_base_url=proxy.url + "/v1", llm_api_key=tool_key, expected_auth=mcp_token).start()
        progress(f"sending {len(planned):,} planned calls for {len(TEAMS)} teams in {len(DEPARTMENTS)} departments through the proxy")
        driver = Driver(proxy.url, keys, clock)
        stats = asyncio.run(driver.drive(planned, lambda i: progress(f"  {i:,} / {len(planned):,} ({planned[i].ts:%Y-%m-%d})")))
        httpx.post(proxy.url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {admin_key}"}, timeout=60).raise_for_status()
    finally:
        if mcp is not None:
            mcp.stop()
        proxy.stop()
        sim.stop()
    return DemoResult(folder, config_path, period_of(now), len(planned), stats, time.monotonic() - t0)


__all__ = ["DemoResult", "NotADemoFolder", "run_demo"]
