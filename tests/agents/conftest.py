"""Agent runs through real `meterline serve` processes: the simulated LLM upstream, the MCP tool
server (whose `summarize` makes LLM sub-calls back through the proxy), and a record of which
call every run made, to check against what the ledger says."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterline.testing.mcp_server import MCPSimServer
from meterline.testing.upstream import SimServer
from tests.conftest import MCP_AUTH, PROVIDER_KEY, free_port
from tests.replicas.fleet import Replica, wait_for

MCP_PRICE = "0.001"
SUMMARIZE_PRICE = "0.002"
SERVER = "tools"  # the MCP server's name under mcp_servers: (the ledger's `provider`)
TOOLS = ("lookup", "summarize")  # the MCP tools agents get: a plain one, one that calls the LLM


def mcp_servers(url: str) -> dict[str, Any]:
    return {
        SERVER: {
            "url": url,
            "auth_header_env": "SIM_MCP_AUTH",
            "price_per_call_usd": MCP_PRICE,
            "tool_prices": {"summarize": SUMMARIZE_PRICE},
            "read_timeout": 30,
        }
    }


@dataclass
class Made:
    """One proxied call a client made: what it was and the id the proxy answered with."""

    kind: str  # llm or mcp
    method: str  # the path for llm, the JSON-RPC method for mcp
    call_id: str
    tool: str = ""
    arguments: Any = None


@dataclass
class Run:
    """The proxied calls one agent run made, in order (its own clients record them)."""

    tag: str
    made: list[Made] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hooks(self) -> dict[str, list[Any]]:
        """httpx event hooks that append every proxied call to `made`."""

        async def on_response(response: Any) -> None:
            call_id = response.headers.get("x-meterline-call-id")
            if not call_id:
                return
            request = response.request
            path = request.url.path
            if "/mcp/" not in path:
                self.add(Made("llm", path.rsplit("/v1", 1)[-1], call_id))
                return
            try:
                body = json.loads(request.content or b"null")
            except ValueError:
                return
            if isinstance(body, dict) and "method" in body and "id" in body:
                params = body.get("params") or {}
                made = Made("mcp", body["method"], call_id)
                if body["method"] == "tools/call":
                    made.tool, made.arguments = params.get("name", ""), params.get("arguments")
                self.add(made)

        return {"response": [on_response]}

    def add(self, made: Made) -> None:
        with self.lock:
            self.made.append(made)

    def client(self, lib: Any = httpx, **kw: Any) -> Any:
        """An `AsyncClient` of `lib` (httpx for openai, httpx2 for the mcp 2.x SDK) that records."""
        return lib.AsyncClient(**{"timeout": 60, **kw, "event_hooks": self.hooks()})


@dataclass
class Stack:
    sim: SimServer
    replicas: list[Replica]
    mcp: MCPSimServer
    agent_key: str
    tool_key: str

    @property
    def proxy(self) -> Replica:
        return self.replicas[0]

    def mcp_url(self, replica: Replica | None = None) -> str:
        return f"{(replica or self.proxy).url}/mcp/{SERVER}"

    def llm_url(self, replica: Replica | None = None) -> str:
        return f"{(replica or self.proxy).url}/v1"

    def flush(self) -> None:
        for r in self.replicas:
            r_ = httpx.post(r.url + "/admin/ledger/flush", headers={"Authorization": "Bearer admin-test-key"}, timeout=30)
            r_.raise_for_status()

    def events(self, replica: Replica | None = None) -> dict[str, dict[str, Any]]:
        """The month's events export, through the CLI, by call id."""
        self.flush()
        out = (replica or self.proxy).cli("export", "events", "--month", month(), "--format", "jsonl").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {r["call_id"]: r for r in rows}

    def subcalls(self) -> list[tuple[str, str]]:
        """(text summarized, call id) of each LLM sub-call the tool server made: the simulator
        saw its prompt, and the proxy's span in `traceparent` is the call's id."""
        out = []
        for r in list(self.sim.requests):
            msgs = r["json"].get("messages") or [{}]
            text = msgs[-1].get("content")
            if isinstance(text, str) and text.startswith("Summarize: "):
                out.append((text.removeprefix("Summarize: "), r["headers"]["traceparent"].split("-")[2]))
        return out


def month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    """An upstream of this module's own, so its recorded requests are this module's."""
    with SimServer(api_key=PROVIDER_KEY) as s:
        yield s


@pytest.fixture
def make_stack(tmp_path: Path, sim: SimServer) -> Iterator[Any]:
    """`make_stack(replicas=1, database=None)`: replicas of `meterline serve` on one ledger
    (a SQLite file, or `database`), the MCP tool server behind them, and two keys: the agents'
    (team nlp) and the tool server's own (team web), which it uses for its LLM sub-calls
    through the last replica."""
    started: list[Any] = []

    def make(replicas: int = 1, database: str | None = None) -> Stack:
        sim.requests.clear()
        port = free_port()
        db = database or f"sqlite:///{tmp_path / 'ledger.db'}"
        fleet = []
        for i in range(replicas):
            r = Replica(tmp_path, f"r{i}", sim.url, db, mcp_servers=mcp_servers(f"http://127.0.0.1:{port}/mcp"))
            started.append(r)
            fleet.append(r.start())
        _, agent_key = fleet[0].create_key("nlp")
        _, tool_key = fleet[0].create_key("web")
        for r in fleet[1:]:
            wait_for(f"{r.name} to know the keys", lambda r=r: _knows(r, tool_key) and _knows(r, agent_key))
        mcp = MCPSimServer(
            port=port,
            llm_base_url=fleet[-1].url + "/v1",
            llm_api_key=tool_key,
            expected_auth=MCP_AUTH.removeprefix("Bearer "),
        )
        started.append(mcp.start())
        return Stack(sim, fleet, mcp, agent_key, tool_key)

    yield make
    for s in reversed(started):
        s.stop()


def _knows(replica: Replica, key: str) -> bool:
    r = httpx.get(replica.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return r.status_code == 200
