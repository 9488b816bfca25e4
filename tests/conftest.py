"""Shared fixtures: a real upstream simulator, a real proxy on a real socket, a real ledger file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
import yaml
from aiohttp import web

from meterline.costing import create_engine, create_key, create_schema, settings_from_dict
from meterline.testing.upstream import SimServer

PROVIDER_KEY = "sk-upstream-secret-0123456789"
MCP_AUTH = "Bearer mcp-server-secret"  # what the proxy sends MCP servers (auth_header_env: SIM_MCP_AUTH)
ADMIN_KEY = "admin-test-key"
FINANCE_KEY = "finance-test-key"  # server.finance_key_env: METERLINE_FINANCE_KEY
ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.postgres", "tests.jetstream"]  # postgres_url: a fresh PostgreSQL database per test; jetstream: a NATS stream per test


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port from the test's own event loop; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()



@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("METERLINE_", "OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def upstream() -> Iterator[SimServer]:
    with SimServer(api_key=PROVIDER_KEY) as sim:
        yield sim


def base_config(tmp_path: Path, upstream_url: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "database": f"sqlite:///{tmp_path / 'ledger.db'}",
        "providers": {"sim": {"base_url": upstream_url + "/v1", "api_key_env": "SIM_API_KEY", "read_timeout": 5, "connect_timeout": 2}},
        "models": [
            {"name": "gpt-4o-mini", "provider": "sim"},
            {"name": "text-embedding-3-small", "provider": "sim"},
            {"name": "house-model", "provider": "sim", "upstream_model": "sim-large", "aliases": ["house"]},
            {"name": "gpt-4.1*", "provider": "sim"},
            {"name": "mystery-model", "provider": "sim"},
        ],
        "prices": [
            {"model": "gpt-4o-mini", "input_per_mtok": "0.15", "cached_input_per_mtok": "0.075", "output_per_mtok": "0.60"},
            {"model": "house-model", "input_per_mtok": "1", "output_per_mtok": "2"},
        ],
        "departments": [
            {"id": "research", "name": "Research", "cost_center": "CC-100", "teams": [{"id": "nlp"}, {"id": "vision"}]},
            {"id": "product", "name": "Product", "cost_center": "CC-200", "teams": [{"id": "web"}]},
        ],
        "server": {"spool_dir": str(tmp_path / "spool"), "key_refresh_seconds": 0.2, "flush_interval_ms": 50},
    }
    for k, v in overrides.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


def proxy_environ() -> dict[str, str]:
    return {"SIM_API_KEY": PROVIDER_KEY, "METERLINE_ADMIN_KEY": ADMIN_KEY, "METERLINE_FINANCE_KEY": FINANCE_KEY, "SIM_MCP_AUTH": MCP_AUTH}


class ProxyServer:
    """The proxy app under uvicorn on a free port, in a thread of the test process.

    Its ledger writer and its tokenizer are threads (`server.ledger_writer: thread`,
    `server.tokenizer: thread`) unless the test asks for the processes: these tests are of what
    the proxy does, and a child's start (a writer's imports are about 2 s of CPU) would be most
    of each one's time. The tests of `meterline serve` (tests/cli, tests/replicas,
    tests/proxy/test_durability.py, tests/proxy/test_tokenizer_process.py) run the default, the processes.
    """

    def __init__(self, cfg: dict[str, Any], tmp_path: Path):
        from meterline.proxy.app import create_app
        from meterline.proxy.http_server import uvicorn_options

        cfg = {**cfg, "server": {"ledger_writer": "thread", "tokenizer": "thread", **cfg.get("server", {})}}
        self.settings = settings_from_dict(cfg, environ=proxy_environ())
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg))
        self.engine = create_engine(self.settings.database)
        create_schema(self.engine)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(self.settings)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                **uvicorn_options(self.settings.server),  # as `meterline serve` runs it
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ProxyServer:
        self.thread.start()
        deadline = time.monotonic() + 90  # a first import of litellm alone can take 20 s on a loaded 2-core host
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.engine.dispose()

    def key(self, team: str = "nlp", **kw: Any) -> str:
        _, secret = create_key(self.engine, team=team, **kw)
        self.app.state.runtime.keys.refresh()
        return secret

    def flush(self) -> None:
        r = httpx.post(self.url + "/admin/ledger/flush", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        r.raise_for_status()

    def events(self) -> list[dict[str, Any]]:
        self.flush()
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text("SELECT * FROM events ORDER BY ts")).mappings()]


@pytest.fixture
def make_proxy(tmp_path: Path, upstream: SimServer) -> Iterator[Any]:
    started: list[ProxyServer] = []

    def make(**overrides: Any) -> ProxyServer:
        p = ProxyServer(base_config(tmp_path, upstream.url, **overrides), tmp_path).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def proxy(make_proxy: Any) -> ProxyServer:
    return make_proxy()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **proxy_environ(), **(env or {})}
    res = subprocess.run(
        [sys.executable, "-m", "meterline", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120
    )
    if check and res.returncode != 0:
        raise AssertionError(f"meterline {' '.join(args)} failed ({res.returncode}): {res.stderr}")
    return res


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty ledger, once on a SQLite file and once on PostgreSQL (when CI provides it)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    create_schema(engine)
    yield engine
    engine.dispose()
