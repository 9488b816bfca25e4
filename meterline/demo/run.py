"""Run the demo: simulators, the proxy on a fresh ledger, a month of traffic through it.

Everything listens on 127.0.0.1 and nothing leaves the machine: the "provider" is
`meterline.testing.upstream.SimServer` and the tool server `meterline.testing.mcp_server`. The
proxy runs in this process so the demo can move its clock (`Meter.clock`) through the month.
"""

from __future__ import annotations

import asyncio
import logging
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
import sqlalchemy as sa
import uvicorn
import yaml

from meterline.costing import (
    Event,
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
    ledger_rows: int  # the calls the ledger holds (an agent run is several)
    ledger_rejected: int  # of them refused by a budget (status `rejected`)
    now: datetime  # the demo's "now": the end of its traffic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _estimate(p: Planned, book: PriceBook) -> Decimal:
    """Roughly what a planned call will cost (to set budgets that the month will hit)."""
    price = book.lookup(p.model, at=p.ts)
    if price is None:
        return Decimal(0)
    usage = Usage(input_tokens=p.input, cached_input_tokens=p.cached, output_tokens=p.output, reasoning_tokens=p.reasoning)
    if p.kind == "agent":  # the run's own two calls (a half and a third), its tools' sub-calls, the tools
        return cost_of(usage, price) * Decimal("0.83") + Decimal("0.05")
    return cost_of(usage, price)


def _budgets(planned: list[Planned], now: datetime) -> dict[str, str]:
    """Budgets sized to a month's traffic (last month's, which the plan holds whole; each
    month's traffic is alike): support's helpdesk passes its budget once, near the end of the
    month, and is refused from then on; product ends the month near its own; research has room."""
    book = PriceBook(settings_from_dict({"prices": PRICES}).prices)
    month = period_of(now.replace(day=1) - timedelta(days=1))
    spent: dict[str, Decimal] = {}
    for p in planned:
        if period_of(p.ts) == month:
            for who in (p.team.id, p.team.department):
                spent[who] = spent.get(who, Decimal(0)) + _estimate(p, book)
    q = Decimal("0.01")

    def size(who: str, share: str) -> str:
        return str(max(q, (spent.get(who, Decimal(0)) * Decimal(share)).quantize(q)))

    return {"helpdesk": size("helpdesk", "0.93"), "product": size("product", "1.12"), "research": size("research", "3")}


def _plain_logging() -> None:
    """One plain line per warning, in order (the MCP SDK's server installs Rich's handler,
    which wraps a line over several and right-aligns the source file)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _ledger_counts(engine: sa.Engine) -> tuple[int, int]:
    t: sa.Table = Event.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.status == "rejected")).scalar_one()
    return int(rows), int(rejected)


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
        runtime = proxy.app.state.runtime
        runtime.meter.clock = clock
        if runtime.budgets is not None:  # budgets count the month the call is in, not today's
            runtime.budgets.now = clock
            runtime.budgets.refresh()
        runtime.credits.now = clock  # grants count at the demo's time too
        runtime.keys.refresh()
        mcp = MCPSimServer(port=mcp_port, llm_base_url=proxy.url + "/v1", llm_api_key=tool_key, expected_auth=mcp_token).start()
        _plain_logging()
        progress(f"sending {len(planned):,} planned calls for {len(TEAMS)} teams in {len(DEPARTMENTS)} departments through the proxy")
        driver = Driver(proxy.url, keys, clock)
        turn = runtime.budgets.refresh if runtime.budgets is not None else None
        stats = asyncio.run(
            driver.drive(planned, lambda i: progress(f"  {i:,} / {len(planned):,} ({planned[i].ts:%Y-%m-%d})"), turn)
        )
        httpx.post(proxy.url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {admin_key}"}, timeout=60).raise_for_status()
    finally:
        if mcp is not None:
            mcp.stop()
        proxy.stop()
        sim.stop()
    engine = create_engine(settings.database)
    rows, rejected = _ledger_counts(engine)
    engine.dispose()
    return DemoResult(folder, config_path, period_of(now), len(planned), stats, time.monotonic() - t0, rows, rejected, now)


__all__ = ["DemoResult", "NotADemoFolder", "port_free", "run_demo"]
